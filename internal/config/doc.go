// Package config loads, interpolates and validates tandem.yaml, the file that names the
// control database, the nodes (databases) that take part, and the syncs between their
// tables.
//
// # File
//
//	control: ${TANDEM_CONTROL_URL}
//	nodes:
//	  crm:     { dsn: "${CRM_URL}", capture: trigger, queue_limit: { rows: 1000000, age: 24h } }
//	  hubspot: { dsn: "${HUBSPOT_URL}" }
//	syncs:
//	  - id: contacts
//	    source: { node: crm,     table: public.contacts }
//	    target: { node: hubspot, table: public.hs_contacts, key: [hs_id] }
//	    match: [email]
//	    fields:
//	      - { source: full_name, target: [firstname, lastname], transform: split_name }
//	      - { source: email,     target: email, transform: lowercase }
//
// Defaults: capture trigger, direction bidirectional, conflict latest_wins, interval 5s,
// entity the target table's name. A field's source and target, an endpoint's key and a
// sync's match each take one column name or a list of them.
//
// # Interpolation
//
// ${VAR} and ${VAR:-default} are replaced in scalar values (never in keys) through the
// getenv function given to [Load] or [Parse], so secrets stay out of the file. The default
// is used when VAR is unset or empty, and runs to the first "}". $$ is a literal $; a $ not
// followed by { or $ is kept as it is. Values read from the environment are not expanded
// again.
//
// # Problems
//
// The file is parsed into a yaml.Node tree and walked by hand so that every value keeps
// its line. Nothing stops at the first mistake: unknown keys, wrong types, bad values,
// unset variables and cross-references (unknown node, duplicate sync id, a table given two
// different keys) are all collected into [Problems], sorted by line, one per line of
// output:
//
//	tandem.yaml:12: syncs[0].source.node: unknown node "crmm" (known: crm, hubspot)
//
// Code that checks the config against the live catalogs reports through
// [Problems.Add] with the lines kept in [Node], [Sync], [Endpoint], [Field] and [TableRef],
// so all problems read alike. Connection strings never appear in a problem; use
// [RedactDSN] before logging one.
//
// YAML anchors, aliases and merge keys (<<) work as usual; keys written in a mapping win
// over merged ones.
package config
