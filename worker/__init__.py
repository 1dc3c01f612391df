"""The ``sytq worker`` process: handlers for llm:chat, llm:process and callback:deliver."""

from worker.handlers import build_handlers
from worker.pipeline import Pipeline, build_pipeline

__all__ = ["Pipeline", "build_handlers", "build_pipeline"]
