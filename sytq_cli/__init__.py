"""The launcher layer: the ``sytq`` command, ``sytq run`` with its embedded stand-ins, the stub LLM.

It sits above the services (api, worker, controller) and may import them; nothing imports it.
"""
