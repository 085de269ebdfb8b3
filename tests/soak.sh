#!/usr/bin/env bash
# Soak: vigil replays Ped2 test videos in a loop at full speed (one camera per video, all in one
# process, unpaced and lossless) into a real mosquitto that is stopped for 20 s every 60 s,
# until the cameras have captured FRAMES frames in all. Every 10 s it samples vigil's resident
# memory and open file descriptors; at the end it stops vigil with SIGTERM and compares the
# events vigil accepted (its log) with those a persistent QoS 1 subscriber received.
# docs/benchmarks.md ("Soak") quotes its summary. Not part of CI: it runs for most of an hour.
#
#   cargo build --release -p vigil && bash tests/soak.sh
#
# Env: VIGIL_BIN (default target/release/vigil), PED2 (default ../shared/datasets/ped2),
#      FRAMES (default 100000), VIDEOS (default "01 03 05 07", labelled test videos), OUT (kept results, default a tmp dir)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$(realpath "${VIGIL_BIN:-target/release/vigil}")
ped2=$(realpath "${PED2:-../shared/datasets/ped2}")
frames_goal=${FRAMES:-100000}
videos=${VIDEOS:-01 03 05 07}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
[ -x "$bin" ] || { echo "soak: $bin not found; run: cargo build --release -p vigil" >&2; exit 1; }
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for t in "$mosq" mosquitto_sub python3; do
  command -v "$t" >/dev/null || [ -x "$t" ] || { echo "soak: $t missing: bash tests/bootstrap.sh test" >&2; exit 1; }
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$out/mosquitto" && chmod 777 "$out/mosquitto"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_on_changes true\nautosave_interval 1\n' \
  "$port" "$out/mosquitto" > "$out/mosquitto.conf"
broker_pid=
broker_up() { "$mosq" -c "$out/mosquitto.conf" >>"$out/mosquitto.log" 2>&1 & broker_pid=$!; sleep 0.5; }
broker_down() { kill -TERM "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true; broker_pid=; }
cleanup() { kill $(jobs -p) 2>/dev/null || true; pkill -f -- "-i soak-consumer" 2>/dev/null || true; }
trap cleanup EXIT
broker_up
# The consumer: a persistent QoS 1 session, restarted with the same id if it ever exits.
( while :; do
    mosquitto_sub -h 127.0.0.1 -p "$port" -t 'vigil/soak/+/events' -q 1 -c -i soak-consumer -v \
      >> "$out/received.txt" 2>>"$out/sub.log" || true
    sleep 1
  done ) &
sleep 0.5

cfg="$out/vigil.toml"
printf '[mqtt]\nhost = "127.0.0.1"\nport = %s\ndevice = "soak"\nkeep_alive_s = 5\n\n[outbox]\ndir = "%s/outbox"\n\n[health]\ninterval_s = 5\n' \
  "$port" "$out" > "$cfg"
for v in $videos; do
  printf '\n[[camera]]\nname = "ped2-%s"\nmodel = "engine/models/ped2-bdfi"\nsource = { kind = "dir", path = "%s", loop = true }\n' \
    "$v" "$ped2/testing/frames/$v" >> "$cfg"
done
VIGIL_LOG=info "$bin" run --config "$cfg" > "$out/vigil.log" 2>&1 &
vigil=$!
start=$(date +%s)
echo "t_s,rss_kib,fds,frames,broker" > "$out/samples.csv"
frames=0
last_frames=0
while [ "$frames" -lt "$frames_goal" ]; do
  sleep 10
  kill -0 "$vigil" 2>/dev/null || { echo "soak: vigil exited early; log: $out/vigil.log" >&2; tail -20 "$out/vigil.log" >&2; exit 1; }
  t=$(( $(date +%s) - start ))
  # Broker: up for 60 s, down for 20 s, repeatedly.
  if [ -n "$broker_pid" ] && [ $(( t % 80 )) -ge 60 ]; then broker_down
  elif [ -z "$broker_pid" ] && [ $(( t % 80 )) -lt 60 ]; then broker_up; fi
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$vigil/status")
  fds=$(ls "/proc/$vigil/fd" | wc -l)
  # Frames captured so far: the cameras' counters from vigil's retained health message.
  if [ -n "$broker_pid" ]; then
    frames=$(timeout 5 mosquitto_sub -h 127.0.0.1 -p "$port" -t vigil/soak/health -C 1 -W 4 2>/dev/null \
      | python3 -c 'import json,sys; print(sum(c["frames"] for c in json.load(sys.stdin)["cameras"]))' 2>/dev/null \
      || echo "$last_frames")
    last_frames=$frames
  fi
  echo "$t,$rss,$fds,$frames,$([ -n "$broker_pid" ] && echo up || echo down)" | tee -a "$out/samples.csv"
done
[ -n "$broker_pid" ] || broker_up
sleep 5
kill -TERM "$vigil"
rc=0; wait "$vigil" || rc=$?
sleep 3
python3 - "$out" "$rc" <<'EOF'
import csv, json, re, sys
out, rc = sys.argv[1], int(sys.argv[2])
produced = []
for line in open(f"{out}/vigil.log", errors="replace"):
    m = re.search(r" event (\w+) (\w+) camera (\S+) frame (\d+) .*\(outbox #", line)
    if m:
        produced.append((m[1], m[2], m[3], int(m[4])))
seen, received = set(), []
for line in open(f"{out}/received.txt", errors="replace"):
    topic, _, payload = line.partition(" ")
    try:
        e = json.loads(payload)
    except ValueError:
        continue
    key = (e["type"], e["id"], e["camera"], e["frame"])
    if key not in seen:
        seen.add(key)
        received.append(key)
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
rss = [int(r["rss_kib"]) for r in rows]
fds = [int(r["fds"]) for r in rows]
per_cam = lambda xs: {c: [k for k in xs if k[2] == c] for c in sorted({k[2] for k in xs})}
in_order = all(per_cam(received).get(c, []) == ks for c, ks in per_cam(produced).items())
lost = len(set(produced) - seen)
print(f"soak: {rows[-1]['frames']} frames in {rows[-1]['t_s']} s, broker down {sum(r['broker'] == 'down' for r in rows) * 10} s of it")
print(f"soak: RSS start {rss[0]} KiB (after 10 s), end {rss[-1]} KiB, max {max(rss)} KiB; fds start {fds[0]}, end {fds[-1]}, max {max(fds)}")
print(f"soak: events produced {len(produced)}, received (de-duplicated) {len(received)}, lost {lost}, in order per camera: {in_order}; vigil exit code {rc}")
sys.exit(0 if lost == 0 and in_order and rc == 0 else 1)
EOF
