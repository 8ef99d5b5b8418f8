// Skipping a dev_consul test on a real agent, naming the dev_consul-only hook it needs
// (advance_clock, restart, stop, a second agent, introspection...).
#pragma once

#include "consul_target.hpp"

#define LAKEMESH_NEEDS_DEV_HOOK(target, hook)                                   \
    if ((target).dev() == nullptr) {                                            \
        GTEST_SKIP() << "needs dev_consul's " hook "; skipped on a real agent"; \
    }
