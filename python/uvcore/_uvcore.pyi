# Type stubs for the C core uvcore._uvcore. Each concept keeps its own section.
from typing import Any

libuv_version: str

# --- loop.c / handle.c ---

# --- queue.c ---

# --- pubsub.c ---

# --- stream.c ---
