"""SYT Queue core: the queue, LLM client, storage, callbacks and the utilities they share."""
