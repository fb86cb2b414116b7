"""gRPC adapter: servicers, server and client of the stockalert.v1 API."""
