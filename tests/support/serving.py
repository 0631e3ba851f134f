"""How the tests' own HTTP servers (the stand-ins, the listeners) are served and stopped."""

import threading


def serve(server):
    """Serve an http.server in a daemon thread. serve_forever looks for shutdown() between waits for a
    request; at its default wait (0.5 s) every test that stopped a server waited about half a second."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    return thread


def stop(server):
    """Stop a server serve() started and close its socket."""
    server.shutdown()
    server.server_close()
