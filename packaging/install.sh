#!/usr/bin/env bash
# Installs thoc-node from this checkout on Debian 12 (as root), for development and tests. Production
# hosts install the Debian package instead (packaging/build-deb.sh; README "Production install").
#   bash packaging/install.sh           install deps, build, link /usr/local/bin/thoc-node
#   bash packaging/install.sh --dev     ... then run a single-node dev agent in the foreground
#   bash packaging/install.sh --service ... then install and enable the systemd unit
# Needs Node.js >= 20 (Debian 12's own nodejs is 18: install Node 20 first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mode=${1:-}

need_node() {
  if ! command -v node >/dev/null; then echo "install.sh: Node.js 20 or newer is required (node not found)" >&2; exit 1; fi
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then echo "install.sh: Node.js 20 or newer is required (found $(node --version))" >&2; exit 1; fi
}

apt_install() {
  local missing=()
  for p in $(grep -hv '^#' "$@"); do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

need_node
[ "$(id -u)" = 0 ] && apt_install packaging/apt-packages.txt ${THOC_INSTALL_TEST_DEPS:+packaging/apt-packages-test.txt}
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
if [ "$(id -u)" = 0 ]; then
  ln -sf "$ROOT/bin/thoc-node.js" /usr/local/bin/thoc-node
fi

case "$mode" in
  --dev)
    exec node "$ROOT/bin/thoc-node.js" agent --dev
    ;;
  --service)
    install -d -m 0750 /etc/thoc
    # The data dir: QEMU's group may pass through it to vms/ and images/ (0710), nobody else gets in
    # (docs/vms.md). libvirt-qemu is Debian's QEMU group (libvirt-daemon-system); the agent checks the
    # group against libvirt's own answer at every start and corrects it.
    install -d -m 0710 /var/lib/thoc
    if getent group libvirt-qemu >/dev/null; then chgrp libvirt-qemu /var/lib/thoc; fi
    # Members of group thoc are admin on the agent's local socket (/run/thoc/thoc.sock), like root.
    getent group thoc >/dev/null || groupadd --system thoc
    if [ ! -f /etc/thoc/node.yaml ]; then install -m 0640 packaging/node.yaml /etc/thoc/node.yaml; fi
    # The unit is the Debian package's (/usr/bin/thoc-node, docs in /usr/share/doc): point it at this checkout.
    sed -e 's|^ExecStart=/usr/bin/thoc-node |ExecStart=/usr/local/bin/thoc-node |' \
        -e "s|^Documentation=.*|Documentation=file://$ROOT/docs/operations.md|" \
        systemd/thoc-node.service > /etc/systemd/system/thoc-node.service
    chmod 0644 /etc/systemd/system/thoc-node.service
    systemctl daemon-reload 2>/dev/null && systemctl enable thoc-node.service || echo "install.sh: systemd is not running; enable thoc-node.service later"
    ;;
esac
