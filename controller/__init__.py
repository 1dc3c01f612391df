"""The SYT Queue Kubernetes operator (kopf): LLMTask lifecycle and LLMWorkerPool autoscaling."""
