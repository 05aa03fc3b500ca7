"""RPC: the dispatcher, the server and its handlers, executors, heartbeats, the client."""
