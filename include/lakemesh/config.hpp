// Umbrella for lakemesh configuration aggregates.
#pragma once

#include <lakemesh/consul/client_config.hpp>
