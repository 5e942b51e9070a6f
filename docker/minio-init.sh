#!/bin/sh
# One-shot provisioning of the bundled MinIO: the bucket REALNESS_STORE_URI points into, and the
# access key Airflow uses (a readwrite user, so the DAGs never hold MinIO's root credentials).
# When S3_ENDPOINT_URL names another store (AWS S3), there is nothing to provision here: that
# bucket and key are created on that side (docs/deploy.md). Safe to run on every start.
set -eu

bundled="http://minio:9000"
if [ "$S3_ENDPOINT_URL" != "$bundled" ]; then
    echo "S3 store is $S3_ENDPOINT_URL, not the bundled MinIO: bucket $S3_BUCKET must already exist there."
    exit 0
fi

mc alias set bundled "$bundled" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "bundled/$S3_BUCKET"

if [ "$S3_ACCESS_KEY_ID" != "$MINIO_ROOT_USER" ]; then
    mc admin user add bundled "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY"
    # Attaching a policy the user already has is an error in MinIO, so look first.
    case "$(mc admin user info bundled "$S3_ACCESS_KEY_ID")" in
        *readwrite*) ;;
        *) mc admin policy attach bundled readwrite --user "$S3_ACCESS_KEY_ID" ;;
    esac
fi
echo "MinIO ready: bucket $S3_BUCKET, access key $S3_ACCESS_KEY_ID"
