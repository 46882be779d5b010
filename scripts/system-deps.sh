#!/usr/bin/env bash
# Installs the Debian packages this machine lacks for `make up` ("up"), `make test` (the
# default) or the benchmark ("bench"). Nothing is downloaded from anywhere but Debian's archive.
set -euo pipefail

purpose="${1:-test}"
need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
# `make up`: the spam check's engine, which `pat up` starts (PAT_SPAM_ENGINE: rspamd by
# default, or SpamAssassin's spamd), and npm, which installs the caniemail data
# (`make caniemail`). The tests run the spam check on both engines.
engine="${PAT_SPAM_ENGINE:-rspamd}"
if [ "$purpose" != "up" ] || [ "$engine" = rspamd ]; then
  have_cmd rspamd || [ -x /usr/bin/rspamd ] || need+=(rspamd)
fi
if [ "$purpose" != "up" ] || [ "$engine" = spamassassin ]; then
  have_cmd spamd || [ -x /usr/sbin/spamd ] || need+=(spamassassin spamd)
fi
have_cmd npm || need+=(npm)
if [ "$purpose" != "up" ]; then
  have_cmd swaks || need+=(swaks)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  have_cmd chromium || need+=(chromium)
fi
if [ "$purpose" = "bench" ]; then
  have_cmd smtp-source || [ -x /usr/sbin/smtp-source ] || need+=(postfix)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if have_cmd sudo; then sudo="sudo"; else
    echo "error: run as root or install these packages: ${need[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
