#include "model/backbone.h"

#include <c10/util/StringUtil.h>

#include "errors.h"

namespace heimdall {

Backbone::Backbone(const VariantInfo& variant, const BackboneOptions& options, std::string title, int64_t reduction)
    : variant_(variant), options_(options), title_(std::move(title)), reduction_(reduction) {
  options_.variant = variant_.name;
}

void Backbone::check_input(at::IntArrayRef shape) const {
  if (shape.size() != 4 || shape[1] != options_.in_chans)
    throw Error(kErrShape, title_ + " expects input of shape [batch, " + std::to_string(options_.in_chans) +
                               ", height, width], got " + c10::str(shape));
  if (shape[2] < reduction_ || shape[3] < reduction_)
    throw Error(kErrShape, title_ + " downsamples by " + std::to_string(reduction_) + ": input height and width must be ≥ " +
                               std::to_string(reduction_) + ", got " + c10::str(shape));
}

void Backbone::check_input_chw(const std::vector<int64_t>& chw) const {
  if (chw.size() != 3) throw Error(kErrInvalidArgument, "inputShape must be [channels, height, width], got " + c10::str(at::IntArrayRef(chw)));
  if (chw[0] != options_.in_chans)
    throw Error(kErrShape, "inputShape has " + std::to_string(chw[0]) + " channels but the model takes " +
                               std::to_string(options_.in_chans));
  check_input({1, chw[0], chw[1], chw[2]});
}

}  // namespace heimdall
