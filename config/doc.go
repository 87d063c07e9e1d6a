// Package config defines enroot-cri's configuration file: its keys, their defaults, the
// commented default text printed by `enroot-cri config`, and validation.
//
// Invariants: Default() and the parsed DefaultTOML are equal (a test holds this); Load
// rejects unknown keys, wrong types and impossible values with an error that names the
// key and the file. It imports only the standard library, toml and errdefs.
package config
