"""Backups off the cluster: object storage over the S3 API, and the sealing of what goes there.

The one layer that imports boto3 and tink (.importlinter): the handlers use it with the
service's own credentials (access for the tenants' Jobs, pruning, checks), the data Jobs with a
tenant's own (streamed, encrypted uploads and downloads).
"""
