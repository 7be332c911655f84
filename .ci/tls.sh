#!/usr/bin/env bash
# Makes a test CA and a server certificate for 127.0.0.1/localhost signed by it (kept in
# $DIR, made once), gives the local PostgreSQL cluster that certificate, so that tests can
# connect with sslmode=verify-full and sslrootcert=$DIR/ca.pem, and prints $DIR (tests read
# ca.pem, server.pem and server.key there: the Redis TLS test starts its own redis-server
# with them). Needs openssl, root (to hand the key to the postgres user) and the superuser
# URL in $1.
set -euo pipefail
url="${1:?usage: .ci/tls.sh postgres://postgres@127.0.0.1:5432/test}"
DIR=/etc/postgresql/stocky-ci-tls
if [ ! -s "$DIR/server.pem" ]; then
  mkdir -p "$DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Stocky CI test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$DIR/ext.cnf"
  openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 3650 -extfile "$DIR/ext.cnf" -out "$DIR/server.pem" 2>/dev/null
  chown postgres:postgres "$DIR/server.key" "$DIR/server.pem"
  chmod 0600 "$DIR/server.key" "$DIR/ca.key"
  chmod 0644 "$DIR/ca.pem" "$DIR/server.pem"
fi
psql "$url" -qAt \
  -c "ALTER SYSTEM SET ssl = on" \
  -c "ALTER SYSTEM SET ssl_cert_file = '$DIR/server.pem'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$DIR/server.key'" \
  -c "SELECT pg_reload_conf()" >/dev/null
# The reload is asynchronous: wait until a verified connection works.
for _ in $(seq 1 50); do
  if psql "$url?sslmode=verify-full&sslrootcert=$DIR/ca.pem" -qAt -c 'SELECT 1' >/dev/null 2>&1; then
    echo "$DIR"
    exit 0
  fi
  sleep 0.1
done
echo "PostgreSQL does not accept verify-full connections with the test CA" >&2
exit 1
