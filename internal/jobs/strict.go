package jobs

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
)

// DecodeStrict decodes one JSON object into v, refusing unknown fields,
// wrong types and trailing data, and reports a failure as an *Error that
// names the offending field. A key is a field only when it is exactly a
// field's JSON name: encoding/json alone would take "JOB_ID" for job_id.
// The bridge uses it for its own wrapper of Request, so both speak the
// same errors.
//
// The fields are read from v's type, at every depth (structs, pointers,
// slices of structs), so a new field needs only its struct tag.
func DecodeStrict(data []byte, v any) error {
	if len(data) > MaxRequestBytes {
		return invalid("", "request is %d bytes; the limit is %d", len(data), MaxRequestBytes)
	}
	if key := unknownField(data, reflect.TypeOf(v)); key != "" {
		return invalid(key, "unknown field %q", key)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "request must be a single JSON object")
	}
	return nil
}

func decodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid("", "request must be a JSON object, not %s", typeErr.Value)
		}
		// A field promoted from an embedded struct comes as its Go path
		// ("Request.prompt"); the client knows it by its JSON name.
		field := typeErr.Field[strings.LastIndexByte(typeErr.Field, '.')+1:]
		return invalid(field, "must be %s, not %s", describeType(typeErr.Type.String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return invalid("", "request is not valid JSON: %v (at byte %d)", err, syntaxErr.Offset)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "request is empty or cut short")
	}
	return invalid("", "request is not valid JSON: %v", err)
}

func describeType(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "int":
		return "an integer"
	case "uint32":
		return "an integer from 0 to 4294967295"
	case "float64":
		return "a number"
	case "[]string":
		return "an array of strings"
	case "bool":
		return "true or false"
	}
	return "of type " + goType
}

// unknownField returns the first key in data that is not exactly the JSON
// name of a field where t expects an object, or "" when every key is one.
// Broken JSON also gives "": the decoder that follows tells what is wrong.
func unknownField(data []byte, t reflect.Type) string {
	key, _ := firstUnknown(json.NewDecoder(bytes.NewReader(data)), t)
	return key
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// firstUnknown reads one JSON value from dec, checking its keys against t.
func firstUnknown(dec *json.Decoder, t reflect.Type) (string, error) {
	t = indirect(t)
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return "", nil // a scalar
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)
	switch {
	case delim == '{' && t.Kind() == reflect.Struct && !custom:
		fields := jsonFields(t)
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return "", err
			}
			key, _ := tok.(string)
			field, ok := fields[key]
			if !ok {
				return key, nil
			}
			if inner, err := firstUnknown(dec, field); inner != "" || err != nil {
				return fieldPath(key, inner), err
			}
		}
		_, err = dec.Token()
		return "", err
	case delim == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && !custom:
		for i := 0; dec.More(); i++ {
			if inner, err := firstUnknown(dec, t.Elem()); inner != "" || err != nil {
				return fieldPath(fmt.Sprintf("[%d]", i), inner), err
			}
		}
		_, err = dec.Token()
		return "", err
	}
	// A map, a raw message, or a value of the wrong type (the decoder
	// names that): nothing to check inside.
	return "", skipValue(dec)
}

// fieldPath names a field inside another: messages[0].role.
func fieldPath(outer, inner string) string {
	if inner == "" {
		return "" // broken JSON, not an unknown field
	}
	if strings.HasPrefix(inner, "[") {
		return outer + inner
	}
	return outer + "." + inner
}

// skipValue reads the rest of a value whose opening delimiter is read.
func skipValue(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// fieldsByType caches jsonFields.
var fieldsByType sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the JSON names of a struct's fields, those promoted from
// embedded structs included, to their types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsByType.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := make(map[string]reflect.Type)
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || len(f.Index) > 1 && !promoted(t, f.Index) {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && indirect(f.Type).Kind() == reflect.Struct {
			continue // its fields are promoted
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldsByType.Store(t, fields)
	return fields
}

// promoted reports whether the field at index comes through untagged
// embedded structs only, as encoding/json promotes them.
func promoted(t reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		f := t.Field(i)
		if f.Tag.Get("json") != "" || indirect(f.Type).Kind() != reflect.Struct {
			return false
		}
		t = indirect(f.Type)
	}
	return true
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}
