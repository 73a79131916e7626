// Hooks for ringflow's own tests, to hold open windows that are too short to hit by chance. Not
// part of the API; tests include it from cpp/src.
#pragma once

namespace ringflow::testing {

// Called by a Run's admission (the dispatcher, or the admission thread when there are stages before
// the model) between claiming a sample in the input ring and moving it out, as if it were descheduled
// there. Applies to Runs built afterwards; nullptr removes it.
void set_input_claim_hook(void (*hook)());

}  // namespace ringflow::testing
