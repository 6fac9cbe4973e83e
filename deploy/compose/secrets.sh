#!/bin/sh
# Makes ./secrets/ for compose.yaml, readable by its owner alone: a CA, the
# broker's and the gateway's certificates, every password, the auditor's key,
# and empty token files (admit devices and regulators with faceaudit gateway
# --make-token and faceaudit dashboard --make-token --tokens/--devices there).
# What exists is kept. Register the auditor's public key once the broker runs:
# faceaudit keys generate --owner auditor does both at once instead.
set -eu
umask 077
cd "$(dirname "$0")"
mkdir -p secrets
cd secrets

[ -f ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days 825 -subj "/O=faceaudit compose/CN=faceaudit CA"

issue() {  # issue NAME HOST: NAME.pem and NAME.key for HOST, signed by the CA
  [ -f "$1.pem" ] && return
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "/CN=$2" -addext "subjectAltName=DNS:$2,DNS:localhost" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 \
    -copy_extensions copy -out "$1.pem"
  rm -f "$1.csr"
}
issue kafka-broker kafka
cat kafka-broker.key kafka-broker.pem > kafka-broker.keystore.pem
issue gateway localhost

for name in kafka-admin kafka-validator kafka-gateway kafka-producer \
            clickhouse-validator clickhouse-dashboard grafana-admin; do
  [ -f "$name.password" ] || openssl rand -base64 24 | tr -d '\n' > "$name.password"
done

sha() { printf %s "$(cat "$1")" | sha256sum | cut -d' ' -f1; }
cat > clickhouse-users.xml <<XML
<clickhouse>
  <validator_user><password_sha256_hex>$(sha clickhouse-validator.password)</password_sha256_hex>
    <networks><ip>::/0</ip></networks><access_management>0</access_management></validator_user>
  <dashboard_user><password_sha256_hex>$(sha clickhouse-dashboard.password)</password_sha256_hex>
    <profile>reader</profile><networks><ip>::/0</ip></networks></dashboard_user>
</clickhouse>
XML

[ -f auditor.pem ] || openssl genpkey -algorithm ed25519 -out auditor.pem
touch dashboard-tokens.jsonl gateway-devices.jsonl
chmod 600 ./*
echo "secrets in $(pwd)"
