"""`python -m services.query [--host H] [--port P]`: the query service (default port 8003)."""

from shared.serve import serve

if __name__ == "__main__":
    serve("query", 8003)
