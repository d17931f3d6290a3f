// The model families, registered in one place (registry.cc, timm's @register_model is the picture): the binding's
// `variants`, the CLI and ConvNeXt.variants() read them. Adding a family = its folder native/model/<family>/ with a
// function returning its ModelFamily, and one line in registry.cc.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/backbone.h"

namespace heimdall {

struct ModelFamily {
  std::string name;   // "convnext": its variants are "<name>_<size>"
  std::string title;  // "ConvNeXt"
  std::vector<VariantInfo> variants;
  // Builds the backbone of one of `variants` (weights allocated, not initialised: call init_weights()).
  std::function<std::shared_ptr<Backbone>(const VariantInfo&, const BackboneOptions&)> create;
};

// In registration order; the first family also answers to bare sizes ("tiny" → convnext_tiny).
const std::vector<ModelFamily>& model_families();
// Every variant of every family, in registration order.
std::vector<VariantInfo> model_variants();
// Accepts "convnext_tiny", "CONVNEXT_TINY", "convnextv2_atto", "tiny"; throws Error(kErrUnknownVariant) listing the
// valid names.
const VariantInfo& find_variant(const std::string& name);
// The backbone for options.variant (normalised), weights not initialised.
std::shared_ptr<Backbone> create_backbone(const BackboneOptions& options);

}  // namespace heimdall
