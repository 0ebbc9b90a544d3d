// Package ids issues the identifiers and slugs of DESIGN.md section 3 without
// coordination between nodes.
//
// IDs look like EDGE01-LHR-43ax-k3m9qz2p-221126142501: the node's name,
// location and code, eight characters from an unambiguous alphabet, and the
// UTC creation time. Slugs look like example-page-43ax: a URL-safe form of a
// title plus the node's code. Both are unique across the fleet because node
// names and codes are, and because a node never repeats what it issued.
package ids
