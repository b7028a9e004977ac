#!/usr/bin/env bash
# What keeping the subjects a query answer lists costs that query
# (docs/benchmarks.md, "Subjects of query answers"): two binaries side by
# side — OLD, whose `query` record of a subject-listing answer is queued
# without its subjects, and NEW, which writes the answer's subject file and
# makes its record durable before answering (or any two binaries: the same
# run compared the subject file written atomically with one written in
# place) — serve the same data folder in
# turns (alternating order, ROUNDS turns each). Each turn starts the server,
# warms it with 20 queries, then sends QUERIES subject-listing queries one
# after the other (purchases by user_id and plan, the top 200 groups: 200
# pseudonyms per answer, about 90 distinct subjects) and QUERIES aggregate ones (purchases by plan: no
# subject), over HTTP with the project secret. Reports per binary and query
# the median latency and the server's CPU time (user + system, from
# /proc/PID/stat) per query, medians over the turns, and the load average.
#
#   bench/audit_query_subjects.sh OLD_BINARY NEW_BINARY [EVENTS] [ROUNDS] [QUERIES]
#
# Generated data only: 5,000 synthetic users gen-N over 7 days, five event
# names, plan, price and user_id (which the default policy pseudonymises, as
# it does distinct_id). The audit folder is on the data folder's disk.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/audit_data.sh"
old="$1"; new="$2"; events="${3:-100000}"; rounds="${4:-5}"; queries="${5:-200}"
bench_audit_folder
secret="$("${new}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json |
  bench_json_field secret)"
bench_audit_week
# user_id on every row (the breakdown the subject-listing query asks for),
# price on purchases only.
bench_audit_import "${new}" "${events}" '
  const properties = { distinct_id: user, user_id: user, time, $insert_id: "q" + id_hex,
    plan: ["free", "pro", "team"][i % 3] };
  if (name === "purchase") { properties.price = i % 100; }
  return properties;'
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "${old}" "${new}" "${folder}" "${secret}" "${rounds}" "${queries}" <<'PY'
import base64, http.client, json, os, socket, statistics, subprocess, sys, time
old, new, folder, secret = sys.argv[1:5]
rounds, queries = int(sys.argv[5]), int(sys.argv[6])
ticks = os.sysconf('SC_CLK_TCK')
auth = 'Basic ' + base64.b64encode((secret + ':').encode()).decode()
bodies = {
    'subjects': json.dumps({'kind': 'segmentation', 'from': '-8d', 'to': 'now', 'events': ['purchase'],
                            'breakdown': {'properties': ['user_id', 'plan'], 'limit': 200}}),
    'aggregate': json.dumps({'kind': 'segmentation', 'from': '-8d', 'to': 'now', 'events': ['purchase'],
                             'breakdown': 'plan'}),
}

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def cpu_ms(pid):
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / ticks

def ask(connection, body):
    connection.request('POST', '/api/query', body, {'Authorization': auth, 'Content-Type': 'application/json'})
    response = connection.getresponse()
    text = response.read()
    if response.status != 200:
        raise SystemExit(f'query answered {response.status}: {text[:300]!r}')
    return text

def turn(binary):
    port = free_port()
    server = subprocess.Popen([binary, 'serve', '--data', folder + '/data', '--keys', folder + '/keys',
                               '--listen', f'127.0.0.1:{port}'],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
                connection.request('GET', '/healthz')
                connection.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        listed = ask(connection, bodies['subjects']).count(b'psn_')
        for _ in range(19):
            ask(connection, bodies['subjects'])
        result = {'listed': listed}
        for name in ('subjects', 'aggregate'):
            latencies = []
            before = cpu_ms(server.pid)
            for _ in range(queries):
                started = time.monotonic()
                ask(connection, bodies[name])
                latencies.append((time.monotonic() - started) * 1000)
            result[name] = (statistics.median(latencies), (cpu_ms(server.pid) - before) / queries)
        connection.close()
        return result
    finally:
        server.terminate()
        server.wait(timeout=60)

runs = {'old': [], 'new': []}
for round_idx in range(rounds):
    order = [('old', old), ('new', new)]
    for name, binary in (order if round_idx % 2 == 0 else order[::-1]):
        runs[name].append(turn(binary))
for name, results in runs.items():
    for kind in ('subjects', 'aggregate'):
        latency = statistics.median(r[kind][0] for r in results)
        cpu = statistics.median(r[kind][1] for r in results)
        label = f'{results[0]["listed"]} pseudonyms in the answer' if kind == 'subjects' else 'no subject'
        print(f'{name}: {kind} query ({label}): latency median '
              f'{latency:.2f} ms, server CPU {cpu:.2f} ms/query (turns: '
              f'{", ".join(f"{r[kind][1]:.2f}" for r in results)}), {len(results)} turns x {queries}')
subjects = folder + '/data/audit/subjects'
files = sorted(os.listdir(subjects)) if os.path.isdir(subjects) else []
if files:
    with open(os.path.join(subjects, files[-1])) as last:
        counts = [line.split()[1] for line in last if line.startswith('subjects ')]
    print(f'subject files written: {len(files)}, the last {os.path.getsize(os.path.join(subjects, files[-1]))} '
          f'bytes listing {counts[0] if counts else "?"} distinct subjects')
else:
    print('subject files written: 0')
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
