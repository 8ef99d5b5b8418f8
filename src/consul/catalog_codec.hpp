// Decoders of catalog answers, shared by the client and the fuzz targets.
#pragma once

#include <lakemesh/consul/catalog.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lakemesh::consul::detail {

/// GET /v1/catalog/services: {"name": ["tag", ...], ...}.
error_code decode_catalog_services(const std::string& body,
                                   std::map<std::string, std::vector<std::string>>& out,
                                   diagnostics& diag);
/// GET /v1/catalog/service/:name: an array of instances.
error_code decode_catalog_service(const std::string& body, std::vector<catalog_service>& out,
                                  diagnostics& diag);
/// GET /v1/catalog/nodes: an array of nodes.
error_code decode_catalog_nodes(const std::string& body, std::vector<catalog_node>& out,
                                diagnostics& diag);
/// GET /v1/catalog/node/:node: {"Node": {...}, "Services": {id: {...}}}, or null (nullopt).
error_code decode_catalog_node(const std::string& body, std::optional<catalog_node_services>& out,
                               diagnostics& diag);

}  // namespace lakemesh::consul::detail
