// The query API's answers (docs/queries.md), as far as the dashboard reads them.

export interface SegmentationSeries {
  event?: string;
  any_event?: boolean;
  breakdown?: unknown[];
  other?: boolean;
  values: (number | null)[];
  total: number | null;
}

export interface SegmentationAnswer {
  kind: 'segmentation';
  from_ms: number;
  to_ms: number;
  unit: string;
  measure: string;
  buckets: string[];
  bucket_starts_ms: number[];
  series: SegmentationSeries[];
  // "compare": "previous_period": the same query over the period just before.
  previous?: SegmentationAnswer;
}

export interface FunnelStep {
  event?: string;
  any_event?: boolean;
  subjects: number;
  step_conversion: number;
  overall_conversion: number;
  median_ms: number | null;
  p90_ms: number | null;
  // Subjects per time_to_convert_buckets_ms bucket (null: withheld); null for step 1.
  time_to_convert: (number | null)[] | null;
}

export interface FunnelAnswer {
  kind: 'funnel';
  steps: FunnelStep[];
  groups?: { breakdown?: unknown[]; other?: boolean; steps: FunnelStep[] }[];
  // The lower bound of each time-to-convert bucket; the last is open-ended.
  time_to_convert_buckets_ms: number[];
}

export interface RetentionCohort {
  start: string;
  start_ms: number;
  size: number;
  counts: (number | null)[];
  rates: (number | null)[];
  incomplete_from: number | null;
}

export interface RetentionTriangle {
  size: number;
  cohorts: RetentionCohort[];
  total: { counts: (number | null)[]; rates: (number | null)[] };
}

export interface RetentionAnswer extends RetentionTriangle {
  kind: 'retention';
  unit: string;
  mode: string;
  groups?: (RetentionTriangle & { breakdown?: unknown[]; other?: boolean })[];
}

// A filter row of the forms: property, operator and the value as typed.
export interface FilterRow {
  property: string;
  op: string;
  value: string;
}

// The range of every view: a preset ("7d", "30d", …) or custom dates.
export interface Range {
  preset: string;
  from: string;
  to: string;
}
