"""Generated gRPC code of the public API (proto/stockalert/api/v1); do not edit."""
