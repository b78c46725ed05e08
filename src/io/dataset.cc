// open_dataset: recognises what a DATA path holds and builds its source
// (io/sources.cc); read_labels and sibling_labels.
#include "io/dataset.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "io/dataset_internal.h"
#include "io/input_file.h"
#include "io/npy.h"

namespace kvant {

namespace fs = std::filesystem;

namespace {

class LimitSource : public SampleSource {
 public:
  LimitSource(std::unique_ptr<SampleSource> inner, int64_t limit) : inner_(std::move(inner)), limit_(limit) {}
  std::optional<std::map<std::string, Tensor>> next() override {
    if (taken_ >= limit_) return std::nullopt;
    ++taken_;
    return inner_->next();
  }
  void reset() override {
    inner_->reset();
    taken_ = 0;
  }
  int64_t size() const override {
    const int64_t n = inner_->size();
    return n < 0 ? (limit_ == 0 ? 0 : -1) : std::min(n, limit_);
  }

 private:
  std::unique_ptr<SampleSource> inner_;
  int64_t limit_, taken_ = 0;
};

// Names in order, digit runs compared as numbers: input_2 before input_10.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      std::string x = a.substr(i, i_end - i), y = b.substr(j, j_end - j);
      x.erase(0, std::min(x.find_first_not_of('0'), x.size()));
      y.erase(0, std::min(y.find_first_not_of('0'), y.size()));
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

std::vector<fs::path> sorted_entries(const fs::path& folder) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(folder)) out.push_back(entry.path());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return natural_less(a.filename().string(), b.filename().string());
  });
  return out;
}

// A file of the folder with extension `ext`; one that is not a regular file
// (a FIFO named x.npy) is an error, not silently skipped (io/input_file.h).
bool has_extension(const fs::path& p, const char* ext) {
  if (p.extension() != ext) return false;
  std::error_code ec;
  if (fs::is_directory(p, ec)) return false;
  check_regular_input(p);
  return true;
}

std::vector<fs::path> files_with(const fs::path& folder, const char* ext) {
  std::vector<fs::path> out;
  for (const auto& p : sorted_entries(folder)) {
    if (has_extension(p, ext)) out.push_back(p);
  }
  return out;
}

std::string input_names(const std::vector<ValueInfo>& inputs) {
  std::string s;
  for (const auto& in : inputs) s += (s.empty() ? "" : ", ") + in.name;
  return s;
}

std::string first_bytes(const fs::path& file, size_t n) {
  const InputFile in(file);  // refuses FIFOs, devices (io/input_file.h)
  std::string bytes(n, '\0');
  bytes.resize(in.read_up_to(0, bytes.data(), n));
  return bytes;
}

bool starts_with(const std::string& bytes, const char* magic, size_t n) {
  return bytes.size() >= n && std::memcmp(bytes.data(), magic, n) == 0;
}
bool is_npy(const std::string& b) { return starts_with(b, "\x93NUMPY", 6); }
bool is_zip(const std::string& b) { return starts_with(b, "PK\x03\x04", 4) || starts_with(b, "PK\x05\x06", 4); }
bool is_gzip(const std::string& b) { return starts_with(b, "\x1f\x8b", 2); }
bool is_idx(const std::string& b) { return b.size() >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0x08; }

Tensor must(Result<Tensor> r) {
  if (!r.ok()) throw Error(r.status().code(), r.status().message());
  return std::move(r).value();
}

void need_one_input(const std::vector<ValueInfo>& inputs, const std::string& where, const std::string& what) {
  if (inputs.size() != 1) {
    data_error(where + ": " + what + " feeds one input, but the model has " + std::to_string(inputs.size()) + " (" +
               input_names(inputs) + ")");
  }
}

GroupLoader npy_group(std::vector<fs::path> files) {
  return [files = std::move(files)] {
    std::vector<LoadedArray> arrays;
    for (const auto& f : files) arrays.push_back({must(read_npy(f)), f.string()});
    return arrays;
  };
}

// A .npz: the array named after each input; a one-input model also takes the
// only array of a one-array archive, whatever its name. Other arrays are
// ignored (archives often hold labels too).
std::unique_ptr<SampleSource> open_npz(const fs::path& file, const std::vector<ValueInfo>& inputs) {
  auto zip = std::make_shared<ZipReader>(file);
  std::vector<size_t> picked;
  std::vector<std::string> missing, names;
  for (const auto& e : zip->entries()) {
    names.push_back(e.name.size() > 4 && e.name.ends_with(".npy") ? e.name.substr(0, e.name.size() - 4) : e.name);
  }
  for (const auto& in : inputs) {
    auto it = std::find(names.begin(), names.end(), in.name);
    if (it != names.end()) {
      picked.push_back(static_cast<size_t>(it - names.begin()));
    } else if (inputs.size() == 1 && names.size() == 1) {
      picked.push_back(0);
    } else {
      missing.push_back(in.name);
    }
  }
  if (names.empty()) data_error(file.string() + ": the archive holds no arrays");
  if (!missing.empty()) {
    std::string m, held;
    for (const auto& n : missing) m += (m.empty() ? "\"" : ", \"") + n + "\"";
    for (const auto& n : names) held += (held.empty() ? "" : ", ") + n;
    data_error(file.string() + ": no array for input(s) " + m + " (the archive holds: " + held + ")");
  }
  GroupLoader loader = [zip, picked, file, names] {
    std::vector<LoadedArray> arrays;
    for (size_t k : picked) {
      const std::string where = file.string() + ":" + names[k];
      const ZipEntry& entry = zip->entries()[k];
      arrays.push_back({zip->read_npy_member(entry, file.string() + ": entry \"" + entry.name + "\""), where});
    }
    return arrays;
  };
  return make_group_source(inputs, {loader}, true);
}

// One test_data_set folder: input_*.pb (else every .pb but output_*.pb),
// matched to inputs by TensorProto name, the rest by order.
GroupLoader pb_group(const fs::path& folder, const std::vector<ValueInfo>& inputs) {
  return [folder, inputs] {
    std::vector<fs::path> files = files_with(folder, ".pb"), named;
    for (const auto& f : files) {
      if (f.filename().string().starts_with("input_")) named.push_back(f);
    }
    if (named.empty()) {
      for (const auto& f : files) {
        if (!f.filename().string().starts_with("output_")) named.push_back(f);
      }
    }
    if (named.empty()) data_error(folder.string() + ": no input_*.pb tensors");
    if (named.size() > inputs.size()) {
      data_error(folder.string() + ": " + std::to_string(named.size()) + " tensors for " +
                 std::to_string(inputs.size()) + " input(s) (" + input_names(inputs) + ")");
    }
    std::vector<LoadedArray> loaded(named.size());
    std::vector<std::string> tensor_names(named.size());
    for (size_t k = 0; k < named.size(); ++k) loaded[k] = load_pb(named[k], &tensor_names[k]);
    std::vector<LoadedArray> arrays(inputs.size());
    std::vector<bool> used(named.size(), false), filled(inputs.size(), false);
    for (size_t i = 0; i < inputs.size(); ++i) {
      for (size_t k = 0; k < named.size(); ++k) {
        if (!used[k] && !tensor_names[k].empty() && tensor_names[k] == inputs[i].name) {
          arrays[i] = loaded[k];
          used[k] = filled[i] = true;
          break;
        }
      }
    }
    size_t k = 0;
    std::string missing;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (filled[i]) continue;
      while (k < named.size() && used[k]) ++k;
      if (k == named.size()) {
        missing += (missing.empty() ? "\"" : ", \"") + inputs[i].name + "\"";
        continue;
      }
      arrays[i] = loaded[k];
      used[k] = true;
    }
    if (!missing.empty()) data_error(folder.string() + ": no tensor for input(s) " + missing);
    return arrays;
  };
}

// The input a file stem names: <input>, <input>_<any> or <any>_<input>; the
// longest such input name wins. nullopt when none.
std::optional<size_t> input_of(const std::string& stem, const std::vector<ValueInfo>& inputs) {
  std::optional<size_t> best;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& n = inputs[i].name;
    const bool match = stem == n || stem.starts_with(n + "_") || stem.ends_with("_" + n);
    if (match && (!best || n.size() > inputs[*best].name.size())) best = i;
  }
  return best;
}

// k-th file of each input's list, together; the lists must be equally long.
std::vector<GroupLoader> zip_lists(const fs::path& folder, const std::vector<ValueInfo>& inputs,
                                   const std::vector<std::vector<fs::path>>& lists) {
  std::string missing;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (lists[i].empty()) missing += (missing.empty() ? "\"" : ", \"") + inputs[i].name + "\"";
  }
  if (!missing.empty()) data_error(folder.string() + ": no .npy files for input(s) " + missing);
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (lists[i].size() != lists[0].size()) {
      data_error(folder.string() + ": " + std::to_string(lists[i].size()) + " .npy files for input \"" +
                 inputs[i].name + "\", but " + std::to_string(lists[0].size()) + " for input \"" + inputs[0].name +
                 "\"");
    }
  }
  std::vector<GroupLoader> groups;
  for (size_t k = 0; k < lists[0].size(); ++k) {
    std::vector<fs::path> files;
    for (const auto& list : lists) files.push_back(list[k]);
    groups.push_back(npy_group(std::move(files)));
  }
  return groups;
}

std::unique_ptr<SampleSource> open_folder(const fs::path& folder, const std::vector<ValueInfo>& inputs,
                                          const DatasetOptions& options) {
  const std::vector<fs::path> entries = sorted_entries(folder);
  if (entries.empty()) data_error(folder.string() + ": the folder is empty");

  std::vector<fs::path> sets;
  for (const auto& p : entries) {
    if (fs::is_directory(p) && p.filename().string().starts_with("test_data_set_")) sets.push_back(p);
  }
  if (!files_with(folder, ".pb").empty()) sets = {folder};
  if (!sets.empty()) {
    std::vector<GroupLoader> groups;
    for (const auto& s : sets) groups.push_back(pb_group(s, inputs));
    return make_group_source(inputs, std::move(groups), false);
  }

  // One subfolder per input name.
  std::vector<std::vector<fs::path>> lists(inputs.size());
  bool any_subfolder = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const fs::path sub = folder / inputs[i].name;
    if (!inputs[i].name.empty() && fs::is_directory(sub)) {
      any_subfolder = true;
      lists[i] = files_with(sub, ".npy");
    }
  }
  if (any_subfolder) return make_group_source(inputs, zip_lists(folder, inputs, lists), true);

  const std::vector<fs::path> npys = files_with(folder, ".npy");
  if (!npys.empty()) {
    if (inputs.size() == 1) {
      std::vector<GroupLoader> groups;
      for (const auto& f : npys) groups.push_back(npy_group({f}));
      return make_group_source(inputs, std::move(groups), true);
    }
    for (const auto& f : npys) {
      const auto i = input_of(f.stem().string(), inputs);
      if (!i) {
        data_error(f.string() + ": the name matches no input (" + input_names(inputs) +
                   "); name files <input>_<n>.npy or <n>_<input>.npy, or use one subfolder per input");
      }
      lists[*i].push_back(f);
    }
    return make_group_source(inputs, zip_lists(folder, inputs, lists), true);
  }

  std::vector<fs::path> images;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (!entry.is_directory() && is_image_file(entry.path())) {
      check_regular_input(entry.path());
      images.push_back(entry.path());
    }
  }
  std::sort(images.begin(), images.end(),
            [](const fs::path& a, const fs::path& b) { return natural_less(a.generic_string(), b.generic_string()); });
  if (!images.empty()) {
    need_one_input(inputs, folder.string(), "an image folder");
    return make_image_source(std::move(images), inputs[0], options.preprocess);
  }
  data_error(folder.string() + ": no .npy, .pb, test_data_set_*, PNG or JPEG files in the folder");
}

std::unique_ptr<SampleSource> open_file(const fs::path& file, const std::vector<ValueInfo>& inputs,
                                        const DatasetOptions& options) {
  const std::string name = file.string();
  const std::string magic = first_bytes(file, 8);
  if (magic.empty()) data_error(name + ": the file is empty");
  if (is_npy(magic)) {
    if (inputs.size() != 1) {
      data_error(name + ": one array, but the model has " + std::to_string(inputs.size()) + " inputs (" +
                 input_names(inputs) + "); use a .npz or a folder");
    }
    return make_group_source(inputs, {npy_group({file})}, true);
  }
  if (is_zip(magic)) return open_npz(file, inputs);
  if (is_gzip(magic) || is_idx(magic)) {
    need_one_input(inputs, name, "an IDX file");
    return make_idx_source(file, inputs[0], options.preprocess);
  }
  if (starts_with(magic, "\x89PNG", 4) || starts_with(magic, "\xff\xd8\xff", 3)) {
    need_one_input(inputs, name, "an image");
    return make_image_source({file}, inputs[0], options.preprocess);
  }
  if (file.extension() == ".pb") {
    need_one_input(inputs, name, "a .pb tensor");
    GroupLoader loader = [file] { return std::vector<LoadedArray>{load_pb(file, nullptr)}; };
    return make_group_source(inputs, {loader}, false);
  }
  data_error(name + ": unrecognized data format (expected .npy, .npz, IDX, .pb, PNG or JPEG)");
}

}  // namespace

std::unique_ptr<SampleSource> open_dataset(const std::string& path, const std::vector<ValueInfo>& inputs,
                                           const DatasetOptions& options) {
  if (inputs.empty()) data_error(path + ": the model has no inputs to feed");
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) throw Error(ErrorCode::kNotFound, path + ": no such file or folder");
  std::unique_ptr<SampleSource> source;
  try {
    source = fs::is_directory(p, ec) ? open_folder(p, inputs, options) : open_file(p, inputs, options);
  } catch (const fs::filesystem_error& e) {
    throw Error(ErrorCode::kNotFound, path + ": " + e.what());
  }
  if (options.limit >= 0) source = std::make_unique<LimitSource>(std::move(source), options.limit);
  return source;
}

std::vector<int64_t> read_labels(const std::string& path) {
  const fs::path file(path);
  const std::string magic = first_bytes(file, 8);
  std::vector<int64_t> labels;
  if (is_gzip(magic) || is_idx(magic)) {
    const IdxArray idx = read_idx(file);
    if (idx.shape.size() != 1) {
      data_error(path + ": IDX labels have rank 1; this file has shape " + shape_to_string(idx.shape));
    }
    labels.assign(idx.data.begin(), idx.data.end());
  } else if (is_npy(magic)) {
    const Tensor t = must(read_npy(file));
    if (!is_integer(t.dtype()) && t.dtype() != DType::kBool) {
      data_error(path + ": labels must be integers; the array is " + t.describe());
    }
    labels.resize(static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) labels[static_cast<size_t>(i)] = t.get_as_int64(i);
  } else {
    std::istringstream in(InputFile(file).read_all());
    std::string line;
    for (int line_no = 1; std::getline(in, line); ++line_no) {
      const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
      if (b == std::string::npos) continue;
      const std::string text = line.substr(b, e - b + 1);
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (*end != '\0' || errno == ERANGE) {
        data_error(path + ":" + std::to_string(line_no) + ": \"" + text + "\" is not an integer label");
      }
      labels.push_back(v);
    }
  }
  if (labels.empty()) data_error(path + ": no labels in the file");
  return labels;
}

std::optional<std::string> sibling_labels(const std::string& data_path) {
  const fs::path p(data_path);
  const std::string name = p.filename().string();
  const std::pair<const char*, const char*> kPatterns[] = {{"-images-idx3-ubyte", "-labels-idx1-ubyte"},
                                                           {"-images.idx3-ubyte", "-labels.idx1-ubyte"}};
  for (const auto& [images, labels] : kPatterns) {
    const size_t at = name.find(images);
    if (at == std::string::npos) continue;
    std::string base = name.substr(0, at) + labels;
    std::string rest = name.substr(at + std::strlen(images));
    std::error_code ec;
    // Same suffix first (".gz" or none), then the other.
    for (const std::string& suffix : {rest, rest == ".gz" ? std::string() : std::string(".gz")}) {
      const fs::path candidate = p.parent_path() / (base + suffix);
      if (fs::is_regular_file(candidate, ec)) return candidate.string();
    }
  }
  return std::nullopt;
}

}  // namespace kvant
