#include <algorithm>
#include <charconv>
#include <cmath>
#include <thread>

#include "query/query.h"
#include "query/watermark.h"
#include "store/segment.h"

namespace minpanel::query {

void AppendJsonNumber(double value, std::string* out) {
  if (!std::isfinite(value)) {
    out->append("null");
    return;
  }
  char buffer[40];
  std::to_chars_result written{};
  const bool negative_zero = value == 0.0 && std::signbit(value);  // "-0" keeps its sign
  if (value == std::trunc(value) && std::fabs(value) < 9.0e15 && !negative_zero) {
    written = std::to_chars(buffer, buffer + sizeof(buffer), static_cast<int64_t>(value));
  } else {
    written = std::to_chars(buffer, buffer + sizeof(buffer), value);  // shortest exact
  }
  out->append(buffer, written.ptr);
}

void AppendJsonValue(const Value& value, std::string* out) {
  switch (value.type()) {
    case Value::Type::kNull:
      out->append("null");
      return;
    case Value::Type::kBool:
      out->append(value.as_bool() ? "true" : "false");
      return;
    case Value::Type::kInt:
      out->append(std::to_string(value.as_int()));
      return;
    case Value::Type::kDouble:
      AppendJsonNumber(value.as_double(), out);
      return;
    case Value::Type::kString:
      AppendJsonString(value.as_string(), out);
      return;
    case Value::Type::kList: {
      out->push_back('[');
      for (size_t item_idx = 0; item_idx < value.as_list().size(); ++item_idx) {
        if (item_idx > 0) {
          out->push_back(',');
        }
        AppendJsonString(value.as_list()[item_idx], out);
      }
      out->push_back(']');
      return;
    }
  }
}

void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  // Most strings need no escape: append the runs between escapes whole.
  size_t run_start = 0;
  for (size_t byte_idx = 0; byte_idx < text.size(); ++byte_idx) {
    const auto byte = static_cast<unsigned char>(text[byte_idx]);
    if (byte >= 0x20 && byte != '"' && byte != '\\') {
      continue;
    }
    out->append(text.data() + run_start, byte_idx - run_start);
    run_start = byte_idx + 1;
    const char c = text[byte_idx];
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (byte < 0x20) {
      switch (c) {
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          out->append("\\u00");
          out->push_back(kHex[byte >> 4]);
          out->push_back(kHex[byte & 0xF]);
      }
    }
  }
  out->append(text.data() + run_start, text.size() - run_start);
  out->push_back('"');
}

void AppendEventJsonLine(const Event& event, std::string* out) {
  AppendEventJsonLine(event, nullptr, out);
}

void AppendEventJsonLine(const Event& event, const Id128* person, std::string* out) {
  const bool merged = person != nullptr && !(*person == event.subject);
  out->append("{\"event\":");
  AppendJsonString(event.name, out);
  // Mixpanel exports whole seconds; the milliseconds stay in the store.
  out->append(",\"properties\":{\"time\":");
  const int64_t seconds =
      event.time_ms >= 0 ? event.time_ms / 1000 : -((-event.time_ms + 999) / 1000);
  out->append(std::to_string(seconds));
  out->append(",\"distinct_id\":\"");
  out->append(FormatPseudonym(merged ? *person : event.subject));
  if (merged) {
    out->append("\",\"");
    out->append(kDistinctIdBeforeIdentityKey);
    out->append("\":\"");
    out->append(FormatPseudonym(event.subject));
  }
  out->append("\",\"$insert_id\":\"");
  out->append(event.insert_id.ToHex());
  out->push_back('"');
  for (const Property& property : event.properties) {
    if (merged && property.key == kDistinctIdBeforeIdentityKey) {
      continue;
    }
    out->push_back(',');
    AppendJsonString(property.key, out);
    out->push_back(':');
    AppendJsonValue(property.value, out);
  }
  out->append("}}\n");
}

namespace {

// The person of each subject, for rows that come in runs of one subject:
// the last answer is kept. Decoy subjects (watermark.h) are in no identity
// map, so each decoy is a person of its own, like most real subjects.
class PersonLookup {
 public:
  explicit PersonLookup(const IdentityMap* persons) : persons_(persons) {}

  // nullptr when the subject is a person of its own.
  const Id128* Find(const Id128& subject) {
    if (persons_ == nullptr || persons_->empty()) {
      return nullptr;
    }
    if (!has_last_ || !(subject == last_subject_)) {
      last_subject_ = subject;
      last_person_ = persons_->Find(subject);
      has_last_ = true;
    }
    return last_person_;
  }

 private:
  const IdentityMap* persons_;
  bool has_last_ = false;
  Id128 last_subject_;
  const Id128* last_person_ = nullptr;
};

// Gathers lines into chunks of about kExportChunkBytes for the sink.
class ChunkWriter {
 public:
  ChunkWriter(const ExportRequest& request, const std::function<bool(std::string_view)>& sink,
              const IdentityMap* persons = nullptr)
      : request_(request), sink_(sink), persons_(persons) {
    chunk_.reserve(kExportChunkBytes + 4096);
  }

  // False once the export is over: the sink closed or the limit was reached.
  // A watermark's decoy (`decoy`) is a line but not a row: the limit, and
  // so a key's export quota cut at it, counts the real rows only, and the
  // decoys never take a real row's place (docs/security.md).
  bool Add(const Event& event, bool decoy = false) {
    AppendEventJsonLine(event, persons_.Find(event.subject), &chunk_);
    if (!decoy) {
      ++summary_.rows;
    }
    if (chunk_.size() >= kExportChunkBytes) {
      summary_.bytes += chunk_.size();
      sink_open_ = sink_(chunk_);
      chunk_.clear();
    }
    return sink_open_ && (request_.limit == 0 || summary_.rows < request_.limit);
  }

  // Whole lines (`rows` of them), cut at the limit. Same result as Add.
  bool AddLines(std::string_view lines, uint64_t rows) {
    if (request_.limit != 0 && summary_.rows + rows > request_.limit) {
      const uint64_t keep = request_.limit - summary_.rows;
      size_t end = 0;
      for (uint64_t line_idx = 0; line_idx < keep; ++line_idx) {
        end = lines.find('\n', end) + 1;
      }
      lines = lines.substr(0, end);
      rows = keep;
    }
    chunk_.append(lines);
    summary_.rows += rows;
    if (chunk_.size() >= kExportChunkBytes) {
      summary_.bytes += chunk_.size();
      sink_open_ = sink_(chunk_);
      chunk_.clear();
    }
    return sink_open_ && (request_.limit == 0 || summary_.rows < request_.limit);
  }

  ExportSummary Finish() {
    if (sink_open_ && !chunk_.empty()) {
      summary_.bytes += chunk_.size();
      sink_(chunk_);
    }
    return summary_;
  }

 private:
  const ExportRequest& request_;
  const std::function<bool(std::string_view)>& sink_;
  PersonLookup persons_;
  std::string chunk_;
  ExportSummary summary_;
  bool sink_open_ = true;
};

bool NameWanted(const ExportRequest& request, const std::string& name) {
  return request.event_names.empty() ||
         std::find(request.event_names.begin(), request.event_names.end(), name) !=
             request.event_names.end();
}

// The blocks of one segment to read for `wanted` (sorted, unique, not
// empty), ascending: those the time and name zone maps allow whose subject
// range [subject_first, subject_last] holds a wanted subject. Blocks come in
// subject order, so one cursor walks `wanted` once.
std::vector<size_t> BlocksOfSubjects(const store::SegmentReader& segment,
                                     const ExportRequest& request,
                                     const std::vector<Id128>& wanted) {
  store::BlockFilter filter;
  filter.time_min_ms = request.from_ms;
  filter.time_max_ms = request.to_ms - 1;
  for (const std::string& name : request.event_names) {
    if (const std::optional<uint32_t> code = segment.FindEventName(name)) {
      filter.name_codes.push_back(*code);
    }
  }
  if (!request.event_names.empty() && filter.name_codes.empty()) {
    return {};
  }
  filter.subject_min = wanted.front();
  filter.subject_max = wanted.back();
  std::vector<size_t> blocks;
  if (segment.summary().stored_subject_runs > 0) {
    // A folded segment keeps a row under its person: a wanted subject's rows
    // may lie in a block whose subject range does not hold it, but then in
    // one of the block's stored subject runs (in the footer: no read).
    filter.subject_min.reset();
    filter.subject_max.reset();
    std::vector<store::StoredSubjectRun> stored_runs;
    for (const size_t block_idx : segment.MatchingBlocks(filter)) {
      const store::SegmentBlockInfo& info = segment.block(block_idx);
      const auto first = std::lower_bound(wanted.begin(), wanted.end(), info.subject_first);
      bool hit = first != wanted.end() && !(info.subject_last < *first);
      if (!hit && segment.ReadStoredSubjects(block_idx, &stored_runs).ok()) {
        hit = std::any_of(stored_runs.begin(), stored_runs.end(), [&](const auto& run) {
          return std::binary_search(wanted.begin(), wanted.end(), run.subject);
        });
      }
      if (hit) {
        blocks.push_back(block_idx);
      }
    }
    return blocks;
  }
  auto cursor = wanted.begin();
  for (const size_t block_idx : segment.MatchingBlocks(filter)) {
    const store::SegmentBlockInfo& info = segment.block(block_idx);
    cursor = std::lower_bound(cursor, wanted.end(), info.subject_first);
    if (cursor == wanted.end()) {
      break;
    }
    if (!(info.subject_last < *cursor)) {
      blocks.push_back(block_idx);
    }
  }
  return blocks;
}

// One block's columns, reused from block to block. The export of a list
// reads the subjects first, then the name, time and insert id columns, and
// decodes the properties of the wanted rows only
// (SegmentReader::ReadPropertiesOfRows): most rows of a block belong to other
// subjects.
struct BlockColumns {
  store::SubjectRuns runs;
  std::vector<uint8_t> row_wanted;
  std::vector<uint32_t> name_codes;
  std::vector<uint8_t> name_wanted;  // per name code of the segment
  std::vector<int64_t> times;
  std::vector<Id128> insert_ids;                  // of the selected rows
  std::vector<uint32_t> selected;                 // block rows to export, ascending
  std::vector<uint32_t> selected_run;             // the subject run of each
  std::vector<store::PropertyColumn> properties;  // per segment.property_keys()
};

// Marks the rows of wanted subjects; false when the block has none.
// `sorted`: the runs' subjects increase (not in a folded block, whose runs
// are by stored subject).
bool MarkWantedRows(const std::vector<Id128>& wanted, bool sorted, BlockColumns* block) {
  block->row_wanted.clear();
  bool any = false;
  auto cursor = wanted.begin();
  for (size_t run_idx = 0; run_idx < block->runs.subjects.size(); ++run_idx) {
    const Id128& subject = block->runs.subjects[run_idx];
    cursor = std::lower_bound(sorted ? cursor : wanted.begin(), wanted.end(), subject);
    const bool hit = cursor != wanted.end() && *cursor == subject;
    any = any || hit;
    block->row_wanted.insert(block->row_wanted.end(), block->runs.run_lengths[run_idx],
                             hit ? 1 : 0);
  }
  return any;
}

void AppendInt(int64_t value, std::string* out) {
  char buffer[24];
  const std::to_chars_result written = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, written.ptr);
}

// One property value as AppendJsonValue writes it.
void AppendColumnValueJson(const store::PropertyColumn& column, size_t row_idx, std::string* out) {
  switch (column.tags[row_idx]) {
    case store::PropertyTag::kAbsent:
    case store::PropertyTag::kNull:
      out->append("null");
      return;
    case store::PropertyTag::kFalse:
      out->append("false");
      return;
    case store::PropertyTag::kTrue:
      out->append("true");
      return;
    case store::PropertyTag::kInt:
      AppendInt(column.ints[row_idx], out);
      return;
    case store::PropertyTag::kDouble:
      AppendJsonNumber(column.doubles[row_idx], out);
      return;
    case store::PropertyTag::kString:
      AppendJsonString(column.strings[row_idx], out);
      return;
    case store::PropertyTag::kList: {
      out->push_back('[');
      for (uint32_t item_idx = column.list_offsets[row_idx];
           item_idx < column.list_offsets[row_idx + 1]; ++item_idx) {
        if (item_idx > column.list_offsets[row_idx]) {
          out->push_back(',');
        }
        AppendJsonString(column.list_items[item_idx], out);
      }
      out->push_back(']');
      return;
    }
  }
}

// A block's subjects as runs of the subjects its rows were stored under: in
// a folded block the person runs are cut at its stored subject runs, so
// the runs no longer increase (`*sorted` false then).
Status ReadStoredRuns(const store::SegmentReader& segment, size_t block_idx,
                      store::SubjectRuns* runs, bool* sorted) {
  *sorted = true;
  MP_RETURN_IF_ERROR(segment.ReadSubjects(block_idx, runs));
  if (segment.summary().stored_subject_runs == 0) {
    return Status::Ok();
  }
  std::vector<store::StoredSubjectRun> stored_runs;
  MP_RETURN_IF_ERROR(segment.ReadStoredSubjects(block_idx, &stored_runs));
  if (stored_runs.empty()) {
    return Status::Ok();
  }
  store::SubjectRuns cut;
  size_t stored_idx = 0;
  uint32_t run_begin = 0;
  for (size_t run_idx = 0; run_idx < runs->subjects.size(); ++run_idx) {
    const uint32_t run_end = run_begin + runs->run_lengths[run_idx];
    for (uint32_t row = run_begin; row < run_end;) {
      uint32_t next = run_end;
      Id128 subject = runs->subjects[run_idx];
      if (stored_idx < stored_runs.size() && stored_runs[stored_idx].row_begin <= row) {
        const store::StoredSubjectRun& stored = stored_runs[stored_idx++];
        next = std::min(run_end, stored.row_begin + stored.row_count);
        subject = stored.subject;
      } else if (stored_idx < stored_runs.size()) {
        next = std::min(run_end, stored_runs[stored_idx].row_begin);
      }
      if (next <= row) {
        return Status::Corruption(segment.name() + ": block " + std::to_string(block_idx) +
                                  ": stored subject runs cross its subject runs");
      }
      cut.subjects.push_back(subject);
      cut.run_lengths.push_back(next - row);
      row = next;
    }
    run_begin = run_end;
  }
  *runs = std::move(cut);
  *sorted = false;
  return Status::Ok();
}

// The wanted rows of one block, in the range and with a wanted name, as JSON
// lines appended to `out` (byte for byte what AppendEventJsonLine writes for
// the same events); `rows` counts them.
Status RenderBlock(const store::SegmentReader& segment, size_t block_idx,
                   const ExportRequest& request, const std::vector<Id128>& wanted,
                   const IdentityMap* persons, BlockColumns* block, std::string* out,
                   uint64_t* rows) {
  *rows = 0;
  // The subjects first (one small chunk): a block may hold none of the
  // wanted ones.
  bool sorted = true;
  MP_RETURN_IF_ERROR(ReadStoredRuns(segment, block_idx, &block->runs, &sorted));
  if (!MarkWantedRows(wanted, sorted, block)) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(segment.ReadNameCodes(block_idx, &block->name_codes));
  MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, &block->times));
  const size_t block_rows = block->row_wanted.size();
  if (block->name_codes.size() != block_rows || block->times.size() != block_rows) {
    return Status::Corruption(segment.name() + ": block " + std::to_string(block_idx) +
                              ": its columns disagree on the row count");
  }
  const std::vector<store::EventNameInfo>& names = segment.event_names();
  block->name_wanted.resize(names.size());
  for (size_t code = 0; code < names.size(); ++code) {
    block->name_wanted[code] = NameWanted(request, names[code].name) ? 1 : 0;
  }
  block->selected.clear();
  block->selected_run.clear();
  size_t run_idx = 0;
  uint32_t run_end = block->runs.run_lengths.empty() ? 0 : block->runs.run_lengths[0];
  for (size_t row_idx = 0; row_idx < block_rows; ++row_idx) {
    while (row_idx >= run_end) {
      run_end += block->runs.run_lengths[++run_idx];
    }
    const int64_t time_ms = block->times[row_idx];
    if (block->row_wanted[row_idx] == 0 || time_ms < request.from_ms || time_ms >= request.to_ms ||
        block->name_wanted[block->name_codes[row_idx]] == 0) {
      continue;
    }
    block->selected.push_back(static_cast<uint32_t>(row_idx));
    block->selected_run.push_back(static_cast<uint32_t>(run_idx));
  }
  if (block->selected.empty()) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(segment.ReadInsertIdsOfRows(block_idx, block->selected, &block->insert_ids));
  MP_RETURN_IF_ERROR(segment.ReadPropertiesOfRows(block_idx, block->selected, &block->properties));
  const std::vector<store::PropertyKeyInfo>& keys = segment.property_keys();
  // `,"key":` of each key, escaped once per block rather than once per row.
  std::vector<std::string> key_prefixes(keys.size());
  size_t before_identity_key_idx = SIZE_MAX;
  for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
    key_prefixes[key_idx].push_back(',');
    AppendJsonString(keys[key_idx].key, &key_prefixes[key_idx]);
    key_prefixes[key_idx].push_back(':');
    if (keys[key_idx].key == kDistinctIdBeforeIdentityKey) {
      before_identity_key_idx = key_idx;
    }
  }
  // Per subject run: the distinct_id written (the person) and, when that is
  // not the subject, the subject as `$distinct_id_before_identity`.
  std::string pseudonym;
  size_t pseudonym_run = SIZE_MAX;
  bool merged = false;
  for (size_t slot = 0; slot < block->selected.size(); ++slot) {
    const uint32_t row_idx = block->selected[slot];
    if (block->selected_run[slot] != pseudonym_run) {
      pseudonym_run = block->selected_run[slot];
      const Id128& subject = block->runs.subjects[pseudonym_run];
      const Id128* person = persons == nullptr ? nullptr : persons->Find(subject);
      merged = person != nullptr && !(*person == subject);
      pseudonym = FormatPseudonym(merged ? *person : subject);
      if (merged) {
        pseudonym.append("\",\"");
        pseudonym.append(kDistinctIdBeforeIdentityKey);
        pseudonym.append("\":\"");
        pseudonym.append(FormatPseudonym(subject));
      }
    }
    out->append("{\"event\":");
    AppendJsonString(names[block->name_codes[row_idx]].name, out);
    // Mixpanel exports whole seconds; the milliseconds stay in the store.
    const int64_t time_ms = block->times[row_idx];
    const int64_t seconds = time_ms >= 0 ? time_ms / 1000 : -((-time_ms + 999) / 1000);
    out->append(",\"properties\":{\"time\":");
    AppendInt(seconds, out);
    out->append(",\"distinct_id\":\"");
    out->append(pseudonym);
    out->append("\",\"$insert_id\":\"");
    out->append(block->insert_ids[slot].ToHex());
    out->push_back('"');
    for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
      const store::PropertyColumn& column = block->properties[key_idx];
      if (column.tags[slot] == store::PropertyTag::kAbsent ||
          (merged && key_idx == before_identity_key_idx)) {
        continue;
      }
      out->append(key_prefixes[key_idx]);
      AppendColumnValueJson(column, slot, out);
    }
    out->append("}}\n");
    ++*rows;
  }
  return Status::Ok();
}

ExportSummary FinishWithPersons(ChunkWriter* writer, const IdentityMap* persons) {
  ExportSummary summary = writer->Finish();
  if (persons != nullptr) {
    summary.identity = persons->stats();
  }
  return summary;
}

// The rendered lines of a batch of blocks, one entry per block.
struct RenderedBatch {
  std::vector<std::string> outputs;
  std::vector<uint64_t> rows;
  std::vector<Status> statuses;
};

// Threads that render a batch while the caller hands the previous one to the
// sink; joined at the latest when it goes out of scope (an early return).
class BatchWorkers {
 public:
  BatchWorkers() = default;
  BatchWorkers(const BatchWorkers&) = delete;
  BatchWorkers& operator=(const BatchWorkers&) = delete;
  ~BatchWorkers() { Join(); }
  template <typename Work>
  void Start(size_t threads, const Work& work) {
    for (size_t thread_idx = 0; thread_idx < threads; ++thread_idx) {
      workers_.emplace_back(work, thread_idx);
    }
  }
  void Join() {
    for (std::thread& worker : workers_) {
      worker.join();
    }
    workers_.clear();
  }

 private:
  std::vector<std::thread> workers_;
};

// The export of a list of subjects over the engine's snapshot. Blocks are
// decoded on kExportSubjectsThreads threads, a batch at a time, and their
// lines handed to the sink in block order; the next batch is decoded while
// the sink takes the lines of the one before (the sink — the audit's look
// at each line and the socket — would otherwise leave the decoding threads
// idle).
Result<ExportSummary> ExportSubjects(store::Engine& engine, const ExportRequest& request,
                                     const std::function<bool(std::string_view)>& sink) {
  std::vector<Id128> wanted = *request.subjects;
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  ChunkWriter writer(request, sink);
  if (wanted.empty() || request.from_ms >= request.to_ms) {
    return writer.Finish();
  }
  MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot,
                      engine.Snapshot(request.project_id));
  std::shared_ptr<const IdentityMap> persons;
  if (request.resolve_persons) {
    MP_ASSIGN_OR_RETURN(persons, ResolveIdentities(snapshot));
  }
  std::vector<std::pair<const store::SegmentReader*, size_t>> tasks;
  for (const auto& segment : snapshot) {
    for (const size_t block_idx : BlocksOfSubjects(*segment, request, wanted)) {
      tasks.emplace_back(segment.get(), block_idx);
    }
  }
  const size_t threads = std::clamp<size_t>(tasks.size(), 1, kExportSubjectsThreads);
  const size_t batch_max = 8 * threads;
  std::vector<BlockColumns> scratch(threads);
  RenderedBatch batches[2];
  for (RenderedBatch& batch : batches) {
    batch.outputs.resize(batch_max);
    batch.rows.resize(batch_max);
    batch.statuses.resize(batch_max);
  }
  // Renders tasks [batch_start, batch_start + batch) into `*into`, thread
  // `thread_idx` taking every threads-th one.
  const auto render = [&](size_t batch_start, size_t batch, RenderedBatch* into,
                          size_t thread_idx) {
    for (size_t task_idx = thread_idx; task_idx < batch; task_idx += threads) {
      const auto& [segment, block_idx] = tasks[batch_start + task_idx];
      into->outputs[task_idx].clear();
      into->statuses[task_idx] =
          RenderBlock(*segment, block_idx, request, wanted, persons.get(), &scratch[thread_idx],
                      &into->outputs[task_idx], &into->rows[task_idx]);
    }
  };
  const auto batch_size = [&](size_t batch_start) {
    return std::min(batch_max, tasks.size() - batch_start);
  };
  // The first batch on every thread, this one included.
  if (!tasks.empty()) {
    BatchWorkers first;
    first.Start(threads - 1, [&](size_t worker_idx) {
      render(0, batch_size(0), &batches[0], worker_idx + 1);
    });
    render(0, batch_size(0), &batches[0], 0);
  }
  size_t current = 0;
  for (size_t batch_start = 0; batch_start < tasks.size(); batch_start += batch_max) {
    const size_t batch = batch_size(batch_start);
    const size_t next_start = batch_start + batch;
    BatchWorkers next;
    if (next_start < tasks.size()) {
      RenderedBatch* into = &batches[1 - current];
      next.Start(threads, [&, next_start, into](size_t thread_idx) {
        render(next_start, batch_size(next_start), into, thread_idx);
      });
    }
    const RenderedBatch& done = batches[current];
    for (size_t task_idx = 0; task_idx < batch; ++task_idx) {
      MP_RETURN_IF_ERROR(done.statuses[task_idx]);
      if (done.rows[task_idx] > 0 && !writer.AddLines(done.outputs[task_idx], done.rows[task_idx])) {
        return FinishWithPersons(&writer, persons.get());
      }
    }
    next.Join();
    current = 1 - current;
  }
  return FinishWithPersons(&writer, persons.get());
}

// The rows an export of a time range will have, about: the rows of the
// snapshot's segments, each in proportion to how much of its time range the
// export covers (every event name counted; at most the request's limit).
Result<uint64_t> EstimateRows(store::Engine& engine, const ExportRequest& request) {
  MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot,
                      engine.Snapshot(request.project_id));
  double rows = 0;
  for (const auto& segment : snapshot) {
    const store::SegmentSummary& summary = segment->summary();
    const int64_t from_ms = std::max(summary.time_min_ms, request.from_ms);
    const int64_t to_ms = std::min(summary.time_max_ms + 1, request.to_ms);
    if (to_ms <= from_ms) {
      continue;
    }
    const double span = static_cast<double>(summary.time_max_ms + 1 - summary.time_min_ms);
    rows += static_cast<double>(summary.row_count) * static_cast<double>(to_ms - from_ms) / span;
  }
  const auto estimate = static_cast<uint64_t>(rows);
  return request.limit == 0 ? estimate : std::min(estimate, request.limit);
}

}  // namespace

Result<ExportSummary> ExportJsonLines(store::Engine& engine, const ExportRequest& request,
                                      const std::function<bool(std::string_view)>& sink) {
  if (request.subjects.has_value()) {
    if (request.subject.has_value()) {
      return Status::InvalidArgument(
          "distinct_ids: give either distinct_id or distinct_ids, not both");
    }
    if (request.subjects->size() > kExportDistinctIdsMax) {
      return Status::InvalidArgument("distinct_ids: " + std::to_string(request.subjects->size()) +
                                     " ids, over the limit of " +
                                     std::to_string(kExportDistinctIdsMax) +
                                     " (kExportDistinctIdsMax)");
    }
    return ExportSubjects(engine, request, sink);
  }
  store::ScanRequest scan;
  scan.project_id = request.project_id;
  scan.from_ms = request.from_ms;
  scan.to_ms = request.to_ms;
  scan.event_names = request.event_names;
  scan.subject = request.subject;

  // The persons of the snapshot at the start; a link stored while the scan
  // runs applies to the next export.
  std::shared_ptr<const IdentityMap> persons;
  if (request.resolve_persons) {
    MP_ASSIGN_OR_RETURN(const store::Engine::SegmentSnapshot snapshot,
                        engine.Snapshot(request.project_id));
    MP_ASSIGN_OR_RETURN(persons, ResolveIdentities(snapshot));
  }
  ChunkWriter writer(request, sink, persons.get());
  if (!request.watermark.has_value() || request.subject.has_value()) {
    const Status scanned =
        engine.Scan(scan, [&](const Event& event) { return writer.Add(event); });
    MP_RETURN_IF_ERROR(scanned);
    return FinishWithPersons(&writer, persons.get());
  }
  MP_ASSIGN_OR_RETURN(const uint64_t rows_expected, EstimateRows(engine, request));
  // A decoy row is a line but not a row: the writer's limit does not count it.
  DecoyMixer mixer(*request.watermark, rows_expected,
                   [&](const Event& event, bool decoy) { return writer.Add(event, decoy); });
  MP_RETURN_IF_ERROR(engine.Scan(scan, [&](const Event& event) { return mixer.Add(event); }));
  mixer.Finish();
  ExportSummary summary = FinishWithPersons(&writer, persons.get());
  summary.decoy_subjects = mixer.decoy_subjects();
  summary.decoy_rows = mixer.decoy_rows();
  return summary;
}

}  // namespace minpanel::query
