"""`python -m services.ingest [--host H] [--port P]`: the ingest service (default port 8001)."""

from shared.serve import serve

if __name__ == "__main__":
    serve("ingest", 8001)
