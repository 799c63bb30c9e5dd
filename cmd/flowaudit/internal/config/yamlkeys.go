package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeStrict decodes node into the struct pointed to by out, key by key,
// so that every error names the full key path (kafka.brokers) and the line,
// and unknown keys are rejected with the list of keys that do exist there.
func decodeStrict(node *yaml.Node, out any) error {
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return nil
		}
		node = node.Content[0]
	}
	if node.Kind == 0 || (node.Kind == yaml.ScalarNode && node.Value == "") {
		return nil // a file of comments only
	}
	return decodeValue(node, reflect.ValueOf(out).Elem(), "")
}

func decodeValue(node *yaml.Node, v reflect.Value, path string) error {
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil // "key:" with no value keeps the default
	}
	if v.Kind() == reflect.Struct && !hasUnmarshaler(v) {
		if node.Kind != yaml.MappingNode {
			return fmt.Errorf("%s (line %d): expected a mapping of keys, got %s", keyName(path), node.Line, describe(node))
		}
		fields := yamlFields(v.Type())
		seen := map[string]bool{}
		var errs []error
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			if seen[k.Value] {
				errs = append(errs, fmt.Errorf("%s (line %d): key given twice", sub, k.Line))
				continue
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				errs = append(errs, fmt.Errorf("%s (line %d): unknown key; valid keys%s are: %s",
					sub, k.Line, under(path), strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			if err := decodeValue(val, v.FieldByIndex(idx), sub); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct && !hasUnmarshaler(reflect.New(v.Type().Elem()).Elem()) {
		if node.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s (line %d): expected a list, got %s", keyName(path), node.Line, describe(node))
		}
		out := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
		var errs []error
		for i, item := range node.Content {
			if err := decodeValue(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				errs = append(errs, err)
			}
		}
		v.Set(out)
		return errors.Join(errs...)
	}
	if err := node.Decode(v.Addr().Interface()); err != nil {
		var te *yaml.TypeError
		msg := err.Error()
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = strings.Join(te.Errors, "; ")
		}
		return fmt.Errorf("%s (line %d): invalid value %q: expected %s (%s)", keyName(path), node.Line, node.Value, typeHint(v.Type()), msg)
	}
	return nil
}

func hasUnmarshaler(v reflect.Value) bool {
	_, ok := v.Addr().Interface().(yaml.Unmarshaler)
	return ok
}

// yamlFields maps each YAML key of struct type t to its field's index
// path; fields tagged ",inline" contribute their own keys.
func yamlFields(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, sub := range yamlFields(f.Type) {
				m[k] = append([]int{i}, sub...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = []int{i}
	}
	return m
}

func sortedKeys(m map[string][]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func keyName(path string) string {
	if path == "" {
		return "configuration"
	}
	return path
}

func under(path string) string {
	if path == "" {
		return " at the top level"
	}
	return " under " + path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func typeHint(t reflect.Type) string {
	switch {
	case t.String() == "time.Duration":
		return "a duration such as 500ms, 10s or 8h"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list of " + typeHint(t.Elem()) + "s"
	}
	return t.String()
}
