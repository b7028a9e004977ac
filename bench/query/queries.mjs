// The query benchmark's five queries, written idiomatically for each peer,
// and the canonical form every engine's answer is reduced to before the
// answers are compared. The semantics are fixed in docs/benchmarks.md
// ("Queries: what each query means"); docs/queries.md states the same for
// minpanel's engine.
//
// Times are milliseconds since the epoch (UTC) in a BIGINT / UInt64 column
// `time`; a day is the UTC day, time // 86,400,000.

export const DAY_MS = 86_400_000;
export const WINDOW_MS = 7 * DAY_MS;
export const RETENTION_PERIODS = 7;
export const COUNTED_EVENT = 'page_viewed';
export const FUNNEL_STEPS = ['sign_up', 'project_created', 'checkout_started', 'purchase'];
export const BIRTH_EVENT = 'sign_up';
export const RETURN_EVENT = 'session_start';

// The columns of the wide table, in the order of both peers' schemas.
export const COLUMNS = [
  ['event', 'String', 'VARCHAR'],
  ['distinct_id', 'String', 'VARCHAR'],
  ['time', 'UInt64', 'BIGINT'],
  ['insert_id', 'String', 'VARCHAR'],
  ['plan', 'String', 'VARCHAR'],
  ['platform', 'String', 'VARCHAR'],
  ['country', 'String', 'VARCHAR'],
  ['browser', 'String', 'VARCHAR'],
  ['os', 'String', 'VARCHAR'],
  ['app_version', 'String', 'VARCHAR'],
  ['lang', 'String', 'VARCHAR'],
  ['session_id', 'String', 'VARCHAR'],
  ['utm_source', 'String', 'VARCHAR'],
  ['experiment', 'String', 'VARCHAR'],
  ['trial', 'UInt8', 'BOOLEAN'],
  ['referrer', 'String', 'VARCHAR'],
  ['page', 'String', 'VARCHAR'],
  ['duration_ms', 'UInt32', 'INTEGER'],
  ['price', 'Float64', 'DOUBLE'],
  ['items', 'UInt32', 'INTEGER'],
  ['order_id', 'String', 'VARCHAR'],
  ['currency', 'String', 'VARCHAR'],
  ['feature', 'String', 'VARCHAR'],
  ['error_code', 'String', 'VARCHAR'],
];

const quote = (text) => `'${text.replaceAll("'", "''")}'`;
const list = (values) => values.map(quote).join(', ');

export function dayLabel(day) {
  return new Date(Number(day) * DAY_MS).toISOString().slice(0, 10);
}

// Canonical answers: plain JSON, rows sorted, numbers as numbers.
function canonDailyCount(rows, params) {
  const counts = new Map(rows.map(([day, count]) => [Number(day), Number(count)]));
  const first = params.fromMs / DAY_MS;
  const out = [];
  for (let day = first; day < params.toMs / DAY_MS; ++day) {
    out.push([dayLabel(day), counts.get(day) ?? 0]);
  }
  return out;
}

function canonDailyUniqueByCountry(rows) {
  return rows
    .map(([day, country, users]) => [dayLabel(day), String(country), Number(users)])
    .filter((row) => row[2] > 0)
    .sort((left, right) => (left[0] + left[1] < right[0] + right[1] ? -1 : 1));
}

// rows: [level, users] with level 1..steps (the furthest step reached).
function canonFunnel(rows) {
  const reached = FUNNEL_STEPS.map(() => 0);
  for (const [level, users] of rows) {
    for (let step = 0; step < Number(level); ++step) {
      reached[step] += Number(users);
    }
  }
  return { steps: FUNNEL_STEPS, reached };
}

// rows: [cohort day, size, count of period 0, ..., count of period 7].
function canonRetention(rows) {
  return rows
    .map(([cohort, size, ...counts]) => [dayLabel(cohort), Number(size), counts.map(Number)])
    .filter((row) => row[1] > 0)
    .sort((left, right) => (left[0] < right[0] ? -1 : 1));
}

// The events of the given users, summarised: their count, their users' count
// and a SHA-256 of the sorted lines "insert_id TAB second TAB event". The
// second, not the millisecond: Mixpanel's export shape (minpanel's) carries
// whole seconds. The distinct id is left out of the lines because minpanel
// exports keyed pseudonyms; the insert ids (random 128-bit, one per event)
// tie each line to its event, and the users' count checks the grouping.
async function canonUserEvents(rows, params, columnNames) {
  const index = (name) => columnNames.indexOf(name);
  const [insertId, distinctId, time, event] = ['insert_id', 'distinct_id', 'time', 'event'].map(index);
  const lines = rows.map((row) =>
    [String(row[insertId]), String(Math.floor(Number(row[time]) / 1000)), String(row[event])].join('\t'));
  lines.sort();
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for (const line of lines) {
    hash.update(line + '\n');
  }
  const users = new Set(rows.map((row) => row[distinctId]));
  return { events: lines.length, users: users.size, sha256: hash.digest('hex') };
}

const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const epochDay = (ms) => Math.floor(ms / DAY_MS);

// minpanel's answers (docs/queries.md, "Results") as the rows the SQL of the
// peers returns, so that one canonical form serves all three engines.
function minpanelDailyRows(answer) {
  return answer.buckets.map((label, idx) => [epochDay(answer.bucket_starts_ms[idx]),
    answer.series[0].values[idx] ?? 0]);
}

function minpanelFunnelRows(answer) {
  const reached = answer.steps.map((step) => step.subjects);
  return reached.map((count, idx) => [idx + 1, count - (reached[idx + 1] ?? 0)]);
}

// Segmentation series broken down by country: (day, country, users) rows.
function minpanelDailyByCountryRows(answer) {
  const rows = [];
  for (const series of answer.series) {
    if (series.other) {
      throw new Error('minpanel answered with an "other" group: raise breakdown.limit');
    }
    for (const [idx, value] of series.values.entries()) {
      rows.push([epochDay(answer.bucket_starts_ms[idx]), series.breakdown[0], value ?? 0]);
    }
  }
  return rows;
}

// Export JSON lines as rows of the peers' columns (time back in ms, whole
// seconds as exported), in the order of MINPANEL_EXPORT_COLUMNS.
export const MINPANEL_EXPORT_COLUMNS = ['insert_id', 'distinct_id', 'time', 'event'];
function minpanelExportRows(text) {
  const rows = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) {
      continue;
    }
    const { event, properties } = JSON.parse(line);
    rows.push([properties.$insert_id, properties.distinct_id, properties.time * 1000, event]);
  }
  return rows;
}

function minpanelRetentionRows(answer) {
  return answer.cohorts.map((cohort) => [epochDay(cohort.start_ms), cohort.size,
    ...cohort.counts.map((count) => count ?? 0)]);
}

// [base, end) of each part of the funnel's entry range (see the funnel's SQL).
const FUNNEL_PART_MS = 15 * DAY_MS;
function funnelParts(fromMs, toMs) {
  const parts = [];
  for (let baseMs = fromMs; baseMs < toMs; baseMs += FUNNEL_PART_MS) {
    parts.push([baseMs, Math.min(baseMs + FUNNEL_PART_MS, toMs)]);
  }
  return parts;
}

// greatest() of 18.16 takes exactly two arguments.
function greatest(terms) {
  return terms.length === 1 ? terms[0] : `greatest(${terms[0]}, ${greatest(terms.slice(1))})`;
}

// Each query: a name, SQL per peer (table name substituted for ClickHouse, as
// there are two sort orders) and the canonical form of its rows.
export function queries(params) {
  const { fromMs, toMs, userIds } = params;
  const lastMs = toMs - 1 + WINDOW_MS;
  const steps = FUNNEL_STEPS;
  const periods = [...Array(RETENTION_PERIODS + 1).keys()];
  return [
    {
      name: 'daily_count',
      title: `daily count of one event (${COUNTED_EVENT}), 30 days`,
      clickhouse: (table) => `SELECT intDiv(time, ${DAY_MS}) AS day, count() AS events
        FROM ${table}
        WHERE event = ${quote(COUNTED_EVENT)} AND time >= ${fromMs} AND time < ${toMs}
        GROUP BY day ORDER BY day`,
      duckdb: `SELECT time // ${DAY_MS} AS day, count(*) AS events
        FROM events
        WHERE event = ${quote(COUNTED_EVENT)} AND time >= ${fromMs} AND time < ${toMs}
        GROUP BY day ORDER BY day`,
      canon: canonDailyCount,
      minpanel: { kind: 'segmentation', from: isoDay(fromMs), to: isoDay(toMs), time_zone: 'UTC',
                  unit: 'day', events: [COUNTED_EVENT], measure: 'total' },
      fromMinpanel: minpanelDailyRows,
    },
    {
      name: 'daily_unique_by_country',
      title: 'daily exact unique users by country',
      clickhouse: (table) => `SELECT intDiv(time, ${DAY_MS}) AS day, country,
          uniqExact(distinct_id) AS users
        FROM ${table}
        WHERE time >= ${fromMs} AND time < ${toMs}
        GROUP BY day, country`,
      duckdb: `SELECT time // ${DAY_MS} AS day, country, count(DISTINCT distinct_id) AS users
        FROM events
        WHERE time >= ${fromMs} AND time < ${toMs}
        GROUP BY day, country`,
      canon: canonDailyUniqueByCountry,
      // Unique subjects across every event name: the any_event selector.
      // 42 countries: a limit of 200 keeps every one (no "other" group).
      minpanel: { kind: 'segmentation', from: isoDay(fromMs), to: isoDay(toMs), time_zone: 'UTC',
                  unit: 'day', events: [{ any_event: true }], measure: 'unique',
                  breakdown: { properties: ['country'], limit: 200 } },
      fromMinpanel: minpanelDailyByCountryRows,
    },
    {
      name: 'funnel',
      title: '4-step funnel, 7-day window',
      // windowFunnel in 18.16 takes a DateTime or UInt32 timestamp and keeps
      // the chain's start in an Int32, so milliseconds work only up to 2^31
      // (24.8 days) from a base. The entries are therefore split into parts
      // of 15 days, each with its own base (15 + 7 days < 24.8): each entry's
      // whole chain lies in its part, and a user's level is the greatest of
      // the parts' levels. Exact to the millisecond.
      clickhouse: (table) => `SELECT level, count() AS users FROM (
          SELECT distinct_id, ${greatest(funnelParts(fromMs, toMs).map(
              ([baseMs, endMs]) => `
            windowFunnel(${WINDOW_MS})(toUInt32(time - ${baseMs}),
              event = ${quote(steps[0])} AND time >= ${baseMs} AND time < ${endMs},
              ${steps
                .slice(1)
                .map(
                  (step) =>
                    `event = ${quote(step)} AND time >= ${baseMs} AND time <= ${endMs - 1 + WINDOW_MS}`,
                )
                .join(',\n              ')})`))} AS level
          FROM ${table}
          WHERE time >= ${fromMs} AND time <= ${lastMs} AND event IN (${list(steps)})
          GROUP BY distinct_id)
        WHERE level > 0
        GROUP BY level`,
      // For each row, the time of the first later step-k event, and, cascading
      // through the later steps, the greedy chain that starts at the row: the
      // first step 2 after it, the first step 3 after that, ... Each "next"
      // time is non-decreasing along a user's rows, so the next chain value is
      // a min over the following rows. Level = 1 + the steps within the window.
      duckdb: `WITH f AS (
          SELECT distinct_id, time, event FROM events
          WHERE time >= ${fromMs} AND time <= ${lastMs} AND event IN (${list(steps)})
        ), s3 AS (
          SELECT *, min(CASE WHEN event = ${quote(steps[3])} THEN time END) OVER later AS n3
          FROM f
          WINDOW later AS (PARTITION BY distinct_id ORDER BY time
                           ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
        ), s2 AS (
          SELECT *, min(CASE WHEN event = ${quote(steps[2])} THEN time END) OVER later AS n2,
                    min(CASE WHEN event = ${quote(steps[2])} THEN n3 END) OVER later AS n23
          FROM s3
          WINDOW later AS (PARTITION BY distinct_id ORDER BY time
                           ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
        ), s1 AS (
          SELECT *, min(CASE WHEN event = ${quote(steps[1])} THEN time END) OVER later AS t1,
                    min(CASE WHEN event = ${quote(steps[1])} THEN n2 END) OVER later AS t2,
                    min(CASE WHEN event = ${quote(steps[1])} THEN n23 END) OVER later AS t3
          FROM s2
          WINDOW later AS (PARTITION BY distinct_id ORDER BY time
                           ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
        ), levels AS (
          SELECT distinct_id,
                 max(1 + coalesce((t1 - time <= ${WINDOW_MS})::INTEGER, 0)
                       + coalesce((t2 - time <= ${WINDOW_MS})::INTEGER, 0)
                       + coalesce((t3 - time <= ${WINDOW_MS})::INTEGER, 0)) AS level
          FROM s1
          WHERE event = ${quote(steps[0])} AND time < ${toMs}
          GROUP BY distinct_id
        )
        SELECT level, count(*) AS users FROM levels GROUP BY level`,
      canon: canonFunnel,
      minpanel: { kind: 'funnel', from: isoDay(fromMs), to: isoDay(toMs), time_zone: 'UTC',
                  steps: FUNNEL_STEPS, window_ms: WINDOW_MS, order: 'loose' },
      fromMinpanel: minpanelFunnelRows,
    },
    {
      name: 'retention',
      title: '7-day retention cohorts by sign-up day',
      // Returns at or after the birth, as docs/queries.md: the birth is a
      // sign_up, so it is never its own return.
      clickhouse: (table) => `SELECT cohort_day, count() AS size,
          ${periods.map((period) => `sum(r[${period + 2}])`).join(', ')}
        FROM (
          SELECT distinct_id, any(cohort) AS cohort_day,
            retention(time = birth,
              ${periods
                .map(
                  (period) =>
                    `event = ${quote(RETURN_EVENT)} AND day = cohort + ${period}` +
                    (period === 0 ? ' AND time >= birth' : ''),
                )
                .join(',\n              ')}) AS r
          FROM (
            SELECT distinct_id, time, event, intDiv(time, ${DAY_MS}) AS day
            FROM ${table}
            WHERE time >= ${fromMs} AND time < ${toMs + RETENTION_PERIODS * DAY_MS}
              AND event IN (${list([BIRTH_EVENT, RETURN_EVENT])})
          ) ANY INNER JOIN (
            SELECT distinct_id, min(time) AS birth, intDiv(min(time), ${DAY_MS}) AS cohort
            FROM ${table}
            WHERE event = ${quote(BIRTH_EVENT)} AND time >= ${fromMs} AND time < ${toMs}
            GROUP BY distinct_id
          ) USING distinct_id
          WHERE time >= birth
          GROUP BY distinct_id)
        GROUP BY cohort_day ORDER BY cohort_day`,
      duckdb: `WITH e AS (
          SELECT distinct_id, time, event FROM events
          WHERE time >= ${fromMs} AND time < ${toMs + RETENTION_PERIODS * DAY_MS}
            AND event IN (${list([BIRTH_EVENT, RETURN_EVENT])})
        ), b AS (
          SELECT *, min(CASE WHEN event = ${quote(BIRTH_EVENT)} AND time < ${toMs} THEN time END)
                      OVER (PARTITION BY distinct_id) AS birth
          FROM e
        ), returns AS (
          SELECT DISTINCT distinct_id, birth // ${DAY_MS} AS cohort,
                 time // ${DAY_MS} - birth // ${DAY_MS} AS period
          FROM b
          WHERE event = ${quote(RETURN_EVENT)} AND time >= birth
            AND time // ${DAY_MS} - birth // ${DAY_MS} <= ${RETENTION_PERIODS}
        ), sizes AS (
          SELECT birth // ${DAY_MS} AS cohort, count(*) AS size
          FROM b WHERE time = birth GROUP BY cohort
        )
        SELECT s.cohort, s.size,
          ${periods.map((period) => `count(r.period) FILTER (WHERE r.period = ${period})`).join(', ')}
        FROM sizes s LEFT JOIN returns r ON r.cohort = s.cohort
        GROUP BY s.cohort, s.size ORDER BY s.cohort`,
      canon: canonRetention,
      minpanel: { kind: 'retention', from: isoDay(fromMs), to: isoDay(toMs), time_zone: 'UTC',
                  birth: BIRTH_EVENT, return: RETURN_EVENT, unit: 'day',
                  periods: RETENTION_PERIODS, mode: 'on' },
      fromMinpanel: minpanelRetentionRows,
    },
    {
      name: 'user_events',
      title: `all events of ${userIds.length.toLocaleString('en')} given users`,
      clickhouse: (table) => `SELECT * FROM ${table} WHERE distinct_id IN (${list(userIds)})`,
      duckdb: `SELECT * FROM events WHERE distinct_id IN (${list(userIds)})`,
      canon: canonUserEvents,
      // POST /api/2.0/export with distinct_ids (a form body); to_date is
      // inclusive, days in the project's zone (UTC).
      minpanelExport: { from_date: isoDay(fromMs), to_date: isoDay(toMs - 1),
                        distinct_ids: JSON.stringify(userIds),
                        // Over [limits] export_reason_rows a reason is needed (docs/security.md).
                        reason: 'benchmark' },
      fromMinpanel: minpanelExportRows,
    },
  ];
}
