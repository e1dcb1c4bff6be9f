"""What an operator installs beside the service to watch it (deploy/monitoring/): the
PrometheusRule made from the plain rules file, and the Grafana dashboard built with the Grafana
Foundation SDK. Not part of the service's image: `python -m monitoring` writes the files, and
a test keeps the committed ones equal to what it writes."""
