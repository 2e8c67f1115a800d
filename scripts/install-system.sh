#!/bin/bash
# System software for the test bed (tests/testbed/) and the services the project's tests talk to.
# Run as root on Debian 12 (bookworm); safe to run again, and quick (well under a second) when all is there.
#   1. Debian packages, in one apt-get call and only when one is missing (apt-get update only then):
#      dovecot-imapd dovecot-submissiond chromium chromium-driver postfix openssl redis-server,
#      and postgresql when no initdb is installed. Postfix is preseeded to "No configuration": the test bed
#      writes its own config; installing it replaces another MTA such as exim4. Where policy-rc.d forbids it
#      (containers) installing starts no service; with systemd apt starts the stock ones, which are unused.
#   2. The OAuth mock's pinned npm packages (tests/testbed/oauth/package.json) into
#      $TESTBED_CACHE/oauth/node_modules, default ${XDG_CACHE_HOME:-$HOME/.cache}/tms-testbed/oauth.
#      Needs Node ^20.19, ^22.12 or ^24 (Debian 12's own nodejs 18 is too old for oauth2-mock-server 8.2.3).
#   3. The machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379), started if they are down.
# Never runs `playwright install`: the tests drive /usr/bin/chromium.
# Output: one line per step. Logs of the slow steps: $TESTBED_CACHE/install-*.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tms-testbed}
mkdir -p "$cache"
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

# run LOG CMD...: run CMD with its output in LOG; on failure show the end of LOG and stop.
run() {
  local log=$1; shift
  "$@" >"$log" 2>&1 || { tail -20 "$log" >&2; echo "install-system: failed: $*" >&2; exit 1; }
}
# listening PORT: something accepts connections on 127.0.0.1:PORT
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_listening PORT: up to 30 s
wait_listening() {
  local i
  for i in $(seq 300); do listening "$1" && return 0; sleep 0.1; done
  return 1
}

# ---- 1. Debian packages ----
pkgs=(dovecot-imapd dovecot-submissiond chromium chromium-driver postfix openssl redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || pkgs+=(postgresql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  t=$SECONDS
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  run "$cache/install-apt-update.log" $SUDO apt-get update
  run "$cache/install-apt.log" $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
  echo "apt: installed ${missing[*]} ($((SECONDS - t)) s)"
else
  echo "apt: all ${#pkgs[@]} packages present"
fi

# ---- 2. npm packages of the OAuth mock ----
command -v node >/dev/null || { echo "node not found: install Node.js ^20.19, ^22.12 or ^24" >&2; exit 1; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a === 24 ? 0 : 1)' || {
  echo "node $(node --version): oauth2-mock-server 8.2.3 needs ^20.19, ^22.12 or ^24" >&2; exit 1; }
O=$cache/oauth
mkdir -p "$O"
# version PACKAGE: the installed version of an npm package in $O, or nothing
version() { node -p 'require(process.argv[1]).version' "$O/node_modules/$1/package.json" 2>/dev/null || true; }
want_mock=$(node -p 'require(process.argv[1]).dependencies["oauth2-mock-server"]' "$root/tests/testbed/oauth/package.json")
want_jose=$(node -p 'require(process.argv[1]).dependencies.jose' "$root/tests/testbed/oauth/package.json")
if cmp -s "$root/tests/testbed/oauth/package.json" "$O/package.json" &&
   [ "$(version oauth2-mock-server)" = "$want_mock" ] && [ "$(version jose)" = "$want_jose" ]; then
  echo "npm: oauth2-mock-server $want_mock and jose $want_jose present in $O"
else
  t=$SECONDS
  cp "$root/tests/testbed/oauth/package.json" "$O/package.json"
  run "$cache/install-npm.log" npm install --prefix "$O" --no-audit --no-fund --no-package-lock
  echo "npm: installed oauth2-mock-server $(version oauth2-mock-server) and jose $(version jose) into $O" \
    "($((SECONDS - t)) s)"
fi

# ---- 3. the machine's PostgreSQL and Redis ----
if listening 5432; then
  echo "postgresql: running on 127.0.0.1:5432"
else
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$v" ] || [ ! -d "/etc/postgresql/$v/main" ]; then
    v=${v:-$(ls /usr/lib/postgresql | sort -V | tail -1)}
    run "$cache/install-pg-createcluster.log" $SUDO pg_createcluster "$v" main
  fi
  run "$cache/install-pg-start.log" $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start
  wait_listening 5432 || { echo "postgresql $v/main did not open 127.0.0.1:5432" >&2; exit 1; }
  echo "postgresql: started cluster $v/main on 127.0.0.1:5432"
fi
if listening 6379; then
  echo "redis: running on 127.0.0.1:6379"
else
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  # daemonised: no output to capture (a pipe would be held open by the daemon)
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log </dev/null >/dev/null 2>&1
  wait_listening 6379 || { echo "redis did not open 127.0.0.1:6379 (log: /var/log/redis/ci.log)" >&2; exit 1; }
  echo "redis: started on 127.0.0.1:6379"
fi
echo "install-system: OK"
