#include "model/registry.h"

#include <algorithm>
#include <cctype>

#include "errors.h"
#include "model/convnext/convnext.h"
#include "model/convnextv2/convnextv2.h"

namespace heimdall {

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = {
      convnext_family(),
      convnextv2_family(),
  };
  return families;
}

std::vector<VariantInfo> model_variants() {
  std::vector<VariantInfo> all;
  for (const auto& f : model_families()) all.insert(all.end(), f.variants.begin(), f.variants.end());
  return all;
}

namespace {
const ModelFamily* family_of(const std::string& key, const VariantInfo** found) {
  for (const auto& f : model_families())
    for (const auto& v : f.variants)
      if (v.name == key) {
        *found = &v;
        return &f;
      }
  return nullptr;
}

const ModelFamily& resolve(const std::string& name, const VariantInfo** variant) {
  std::string key = name;
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (const ModelFamily* f = family_of(key, variant)) return *f;
  if (!model_families().empty())
    if (const ModelFamily* f = family_of(model_families().front().name + "_" + key, variant)) return *f;
  std::string valid;
  for (const auto& v : model_variants()) valid += (valid.empty() ? "" : ", ") + v.name;
  throw Error(kErrUnknownVariant, "unknown model variant \"" + name + "\"; valid variants: " + valid);
}
}  // namespace

const VariantInfo& find_variant(const std::string& name) {
  const VariantInfo* v = nullptr;
  resolve(name, &v);
  return *v;
}

std::shared_ptr<Backbone> create_backbone(const BackboneOptions& options) {
  const VariantInfo* v = nullptr;
  const ModelFamily& family = resolve(options.variant, &v);
  if (options.in_chans < 1)
    throw Error(kErrInvalidArgument, "inChans must be ≥ 1, got " + std::to_string(options.in_chans));
  if (options.drop_path_rate < 0 || options.drop_path_rate >= 1)
    throw Error(kErrInvalidArgument, "dropPathRate must be in [0, 1), got " + std::to_string(options.drop_path_rate));
  BackboneOptions normalised = options;
  normalised.variant = v->name;
  return family.create(*v, normalised);
}

}  // namespace heimdall
