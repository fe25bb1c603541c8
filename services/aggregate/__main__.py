"""`python -m services.aggregate [--host H] [--port P]`: the aggregate service (default port 8002)."""

from shared.serve import serve

if __name__ == "__main__":
    serve("aggregate", 8002)
