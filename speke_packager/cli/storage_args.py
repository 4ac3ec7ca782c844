"""The object-storage options shared by the commands that take ``s3://`` URLs."""

from __future__ import annotations

import argparse

from ..storage import S3Options


def add_storage_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "object storage (s3:// URLs)",
        "credentials, region and retries come from botocore's standard chain: "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and "
        "~/.aws/config, AWS_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_RETRY_MODE, "
        "AWS_MAX_ATTEMPTS, instance and container roles")
    g.add_argument("--endpoint-url", metavar="URL",
                   help="S3-compatible endpoint (MinIO, Ceph, R2...; path-style addressing)")
    g.add_argument("--s3-region", metavar="REGION", help="the bucket's region (default: "
                   "AWS_REGION or the profile's, else us-east-1)")
    g.add_argument("--s3-profile", metavar="NAME", help="AWS profile (default: AWS_PROFILE)")


def storage_options(args: argparse.Namespace) -> S3Options | None:
    """The :class:`S3Options` of the command line (None when no option was given)."""
    endpoint = getattr(args, "endpoint_url", None)
    region = getattr(args, "s3_region", None)
    profile = getattr(args, "s3_profile", None)
    if not (endpoint or region or profile):
        return None
    return S3Options(endpoint_url=endpoint, region=region, profile=profile)
