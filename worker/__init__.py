"""The ``sytq worker`` process: handlers for llm:chat, llm:process and callback:deliver."""

from worker.handlers import build_handlers
from worker.pipeline import Pipeline, build_pipeline
from worker.servers import WorkerServers

__all__ = ["Pipeline", "WorkerServers", "build_handlers", "build_pipeline"]
