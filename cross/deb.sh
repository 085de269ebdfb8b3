#!/usr/bin/env bash
# Packages the cross-built aarch64 `vigil` as a .deb (cargo-deb; metadata in firmware/cli/Cargo.toml)
# and checks the package the way dpkg would install it:
#   - control fields, conffiles (/etc/vigil/vigil.toml), maintainer scripts (sysusers, tmpfiles,
#     systemd enable without start);
#   - the file list and modes, unpacked into a throwaway root with dpkg -x;
#   - systemd-sysusers and systemd-tmpfiles --root on that root create the vigil user (group
#     video) and /var/lib/vigil/{outbox,engines};
#   - the unpacked aarch64 binary, under qemu, passes `vigil check` on the unpacked default
#     config with the unpacked model package.
#
#   bash cross/build.sh && bash cross/deb.sh        # -> target/debian/vigil_<version>-1_arm64.deb
#
# amd64: `cargo deb -p vigil` on an x86-64 build host (not run in CI: a second release build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=aarch64-unknown-linux-gnu
CARGO_DEB_VERSION=3.8.0
fail() { echo "deb: $*" >&2; exit 1; }

command -v cargo-deb >/dev/null || cargo install -q --locked cargo-deb --version "$CARGO_DEB_VERSION"
[ -x "${CARGO_TARGET_DIR:-target}/$target/release/vigil" ] || fail "${CARGO_TARGET_DIR:-target}/$target/release/vigil missing: run bash cross/build.sh first"
# The release profile keeps line tables (readable backtraces while developing): 160 MB, mostly
# tract's. The box gets the binary without them (symbols stay, so a backtrace still names
# functions): aarch64 binutils strip it in place, cargo-deb packages it as it is.
bin="${CARGO_TARGET_DIR:-target}/$target/release/vigil"
if ! command -v aarch64-linux-gnu-strip >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq binutils-aarch64-linux-gnu >/dev/null
fi
aarch64-linux-gnu-strip --strip-debug "$bin"
echo "deb: $bin stripped of debug info: $(du -h "$bin" | cut -f1)"
# Not `tee /dev/stderr`: opening it truncates a log file that stderr is redirected to (it wiped
# the log of two local `.ci/run`s written to a file).
out=$(cargo deb -p vigil --target "$target" --no-build --no-strip 2>&1) || { echo "$out" >&2; fail "cargo deb failed"; }
echo "$out"
deb=$(echo "$out" | grep '\.deb$' | tail -1)
[ -f "$deb" ] || fail "cargo deb printed no package path"
echo "deb: built $deb ($(du -h "$deb" | cut -f1))"

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = vigil ] || fail "Package is $(field Package)"
[ "$(field Architecture)" = arm64 ] || fail "Architecture is $(field Architecture), not arm64"
field Depends | grep -q 'libc6 (>= 2.31)' || fail "Depends lacks libc6 (>= 2.31): $(field Depends)"

dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/vigil/vigil.toml "$tmp/control/conffiles" || fail "/etc/vigil/vigil.toml is not a conffile"
for s in postinst prerm postrm; do [ -x "$tmp/control/$s" ] || fail "no executable $s"; done
grep -q systemd-sysusers "$tmp/control/postinst" || fail "postinst does not create the vigil user"
grep -q systemd-tmpfiles "$tmp/control/postinst" || fail "postinst does not create /var/lib/vigil"
grep -q 'deb-systemd-helper.*enable.*vigil.service' "$tmp/control/postinst" || fail "postinst does not enable vigil.service"
if grep -Eq 'deb-systemd-invoke +(\$_dh_action|start) +.*vigil.service' "$tmp/control/postinst"; then
  grep -q 'if \[ -n "\$2" \]' "$tmp/control/postinst" || fail "postinst starts vigil.service on first install"
fi
grep -q 'enable.*vigil@' "$tmp/control/postinst" && fail "postinst enables the template vigil@.service"

# Files and modes: "path mode" lines, compared with the expected list.
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6, $1}' | sort > "$tmp/all"
# The demo clip is checked by count; everything else file by file.
demo=$(grep -c '^/usr/share/vigil/demo/ped2-test01/[0-9]*\.jpg -rw-r--r--$' "$tmp/all" || true)
want=$(ls firmware/cli/assets/demo/ped2-test01/*.jpg | wc -l)
[ "$demo" = "$want" ] || fail "the package holds $demo demo frames, the checkout $want"
grep -v '^/usr/share/vigil/demo/' "$tmp/all" > "$tmp/files"
cat > "$tmp/expected" <<'LIST'
/etc/vigil/vigil.toml -rw-r--r--
/lib/udev/rules.d/99-vigil-cameras.rules -rw-r--r--
/usr/bin/vigil -rwxr-xr-x
/usr/lib/systemd/system/vigil.service -rw-r--r--
/usr/lib/systemd/system/vigil@.service -rw-r--r--
/usr/lib/sysusers.d/vigil.conf -rw-r--r--
/usr/lib/tmpfiles.d/vigil.conf -rw-r--r--
/usr/share/doc/vigil/README.md -rw-r--r--
/usr/share/doc/vigil/configuration.md -rw-r--r--
/usr/share/doc/vigil/copyright -rw-r--r--
/usr/share/doc/vigil/deploy.md -rw-r--r--
/usr/share/doc/vigil/mqtt.md -rw-r--r--
/usr/share/doc/vigil/schemas/vigil.event-1.schema.json -rw-r--r--
/usr/share/doc/vigil/schemas/vigil.health-1.schema.json -rw-r--r--
/usr/share/vigil/models/ped2-bdfi/calib.cache -rw-r--r--
/usr/share/vigil/models/ped2-bdfi/model.onnx -rw-r--r--
/usr/share/vigil/models/ped2-bdfi/model.toml -rw-r--r--
/usr/share/vigil/models/ped2-hf2vad/calib.cache -rw-r--r--
/usr/share/vigil/models/ped2-hf2vad/model.onnx -rw-r--r--
/usr/share/vigil/models/ped2-hf2vad/model.toml -rw-r--r--
/usr/share/vigil/models/ped2-maam-net/calib.cache -rw-r--r--
/usr/share/vigil/models/ped2-maam-net/model.onnx -rw-r--r--
/usr/share/vigil/models/ped2-maam-net/model.toml -rw-r--r--
/usr/share/vigil/models/ped2-stm-ae/calib.cache -rw-r--r--
/usr/share/vigil/models/ped2-stm-ae/model.onnx -rw-r--r--
/usr/share/vigil/models/ped2-stm-ae/model.toml -rw-r--r--
/usr/share/vigil/models/ped2-ustn-dsc/calib.cache -rw-r--r--
/usr/share/vigil/models/ped2-ustn-dsc/model.onnx -rw-r--r--
/usr/share/vigil/models/ped2-ustn-dsc/model.toml -rw-r--r--
LIST
diff -u "$tmp/expected" "$tmp/files" || fail "file list or modes differ from the expected list (above)"
dpkg-deb -c "$deb" | awk '{print $2}' | grep -Eqv '^(0/0|root/root)$' && fail "files not owned by root"

r="$tmp/root"
dpkg-deb -x "$deb" "$r"
mkdir -p "$r/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$r/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' > "$r/etc/group"
systemd-sysusers --root="$r" "$r/usr/lib/sysusers.d/vigil.conf"
grep -q '^vigil:' "$r/etc/passwd" || fail "sysusers created no vigil user"
grep -Eq '^video:.*vigil' "$r/etc/group" || fail "vigil is not in group video"
systemd-tmpfiles --root="$r" --create "$r/usr/lib/tmpfiles.d/vigil.conf"
for d in var/lib/vigil var/lib/vigil/outbox var/lib/vigil/engines; do
  [ "$(stat -c %a "$r/$d")" = 750 ] || fail "$d is not 0750"
done

# The unpacked binary runs its own default config and model under qemu.
source cross/qemu.sh
# `check` opens the camera as `run` does; this machine has none, so the camera becomes the
# packaged demo clip. The outbox is the state directory tmpfiles created above.
sed -e "s|/usr/share/vigil/models|$r/usr/share/vigil/models|" \
    -e "s|^source = { kind = \"v4l\".*|source = { kind = \"dir\", path = \"$r/usr/share/vigil/demo/ped2-test01\" }|" \
    -e "s|/var/lib/vigil/outbox|$r/var/lib/vigil/outbox|" \
    "$r/etc/vigil/vigil.toml" > "$tmp/vigil.toml"
grep -q 'kind = "dir"' "$tmp/vigil.toml" || fail "the packaged config's camera line changed; update this script"
"${qemu[@]}" "$r/usr/bin/vigil" check --config "$tmp/vigil.toml" \
  || fail "the packaged binary rejects the packaged config"
echo "deb: $deb checked: control, conffiles, maintainer scripts, $(wc -l < "$tmp/all") files ($demo demo frames), user, state dirs, check under qemu"
