#!/usr/bin/env bash
# Lints the deployment files (run by .ci/run): the systemd units with `systemd-analyze
# verify` (any warning fails), compose.yaml and the Dockerfile for the structure they
# promise (docker itself cannot run on the CI machine). $1: the stocky binary to check the
# commands they run against.
set -euo pipefail
bin=$(realpath "${1:?usage: deploy/lint.sh path/to/stocky}")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for unit in systemd/*.service; do
  sed "s#/usr/local/bin/stocky#$bin#" "$unit" > "$tmp/$(basename "$unit")"
  out=$(systemd-analyze verify "$tmp/$(basename "$unit")" 2>&1 || true)
  if [ -n "$out" ]; then
    echo "$unit: $out" >&2
    exit 1
  fi
  # The command line it runs must parse (--help of the same subcommand).
  sub=$(sed -n 's#^ExecStart=/usr/local/bin/stocky \([a-z]*\).*#\1#p' "$unit")
  "$bin" "$sub" --help >/dev/null
  echo "$unit: ok"
done

python3 - "$bin" <<'PY'
import subprocess, sys, yaml
binary = sys.argv[1]
compose = yaml.safe_load(open("compose.yaml"))
services = compose["services"]
assert {"hub", "postgres", "redis"} <= services.keys(), services.keys()
hub = services["hub"]
assert hub["build"]["dockerfile"] == "deploy/Dockerfile"
env = hub["environment"]
for key in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET"):
    assert key in env, f"hub needs {key}"
assert env["DATABASE_URL"].split("@")[1].startswith("postgres:"), "DATABASE_URL names the postgres service"
assert env["REDIS_URL"].startswith("redis://redis:"), "REDIS_URL names the redis service"
for name in ("postgres", "redis"):
    assert "healthcheck" in services[name], f"{name} has a healthcheck"
    assert hub["depends_on"][name]["condition"] == "service_healthy"
for volume in hub.get("volumes", []):
    assert volume.split(":")[0] in compose["volumes"], volume
print("compose.yaml: ok")

lines = [l.strip() for l in open("Dockerfile") if l.strip() and not l.startswith("#")]
stages = [l for l in lines if l.startswith("FROM ")]
assert len(stages) >= 2, "a multi-stage build"
assert any(l.startswith("USER ") and l.split()[1] != "root" for l in lines), "runs unprivileged"
health = next(l for l in lines if l.startswith("HEALTHCHECK"))
cmd = [l for l in lines if l.startswith("CMD [")]
assert cmd, "a default command"
# The health check's command exists in the binary.
probe = subprocess.run([binary, "probe", "--help"], capture_output=True)
assert probe.returncode == 0, probe.stderr
print("Dockerfile: ok")
PY
