#!/bin/sh
# The nginx service's command: picks the server blocks, then runs nginx (the arguments).
# With a certificate and key in the TLS directory (TLS_CERT_DIR on the host), HTTPS on 443 and port 80
# redirecting to it (https.conf); without them, plain HTTP on port 80 (http.conf). Both get the upload limit.
set -eu

realness_dir="$(dirname "$0")"
tls_dir="${NGINX_TLS_DIR:-/etc/nginx/tls}"
site="${NGINX_SITE_CONF:-/etc/nginx/conf.d/default.conf}"

# The verdicts page refuses an upload over REALNESS_REPORT_UPLOAD_MAX_BYTES with a message; nginx lets
# it through to say so, with 1 MiB for the form's other fields (the page's own allowance, UPLOAD_CHUNK).
body_limit=$(( ${REALNESS_REPORT_UPLOAD_MAX_BYTES:?} + 1048576 ))

if [ -s "$tls_dir/fullchain.pem" ] && [ -s "$tls_dir/privkey.pem" ]; then
    sed -e "s/@AIRFLOW_HTTPS_PORT@/${AIRFLOW_HTTPS_PORT:?}/" -e "s/@CLIENT_MAX_BODY_SIZE@/$body_limit/" \
        "$realness_dir/https.conf" > "$site"
    echo "nginx: HTTPS on port 443 with $tls_dir/fullchain.pem; port 80 redirects to it"
else
    sed "s/@CLIENT_MAX_BODY_SIZE@/$body_limit/" "$realness_dir/http.conf" > "$site"
    echo "nginx: plain HTTP on port 80 (no certificate in $tls_dir)"
fi
exec "$@"
