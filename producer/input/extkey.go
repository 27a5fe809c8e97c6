package input

// ExtensionKey is what the producer does with a key (a JSON member or a
// column) that is neither FOCUS nor x_: kept as the extension x_<name>,
// with the warning the producer reports once per file; or, when even the
// repaired name cannot be kept, the problem. The ingest gateway uses it so
// that it decides as `usage-producer publish` does.
func ExtensionKey(key string) (ext, warning, problem string) {
	c := &collector{}
	col, p := unknownColumn(c, 0, key)
	if p != "" {
		return "", "", p
	}
	if len(c.warns) > 0 {
		warning = c.warns[0].Problem
	}
	return "x_" + col.name, warning, ""
}
