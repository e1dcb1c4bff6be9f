"""One module per command: decide, call k8s/ and store/, return an outcome."""
