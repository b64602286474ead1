package check

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// sarifSchemaURL is the schema's own id: the compiler is given the kept copy under that name so
// that nothing is fetched (CI has no network).
const sarifSchemaURL = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

// sarifSchema compiles the OASIS SARIF 2.1.0 schema kept in testdata (see
// testdata/sarif-schema-2.1.0.NOTICE for its source), with format assertions on, so a URI or
// date-time that is not one fails too.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(sarifSchemaURL, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(sarifSchemaURL)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sarifOf(t *testing.T, r *Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, r, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func validateSARIF(s *jsonschema.Schema, out []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// TestSARIFSchema validates strata's SARIF against the OASIS 2.1.0 schema: findings of several
// rules, a priced finding (its property bag), an absolute path (a file:// URI) and a report with
// no findings.
func TestSARIFSchema(t *testing.T) {
	s := sarifSchema(t)
	r := lint(t, "FROM node\nWORKDIR /app\nCOPY . .\nRUN npm ci\nADD https://e.com/x /x\nRUN apt-get update\nRUN apt-get install -y git\n", nil)
	if len(r.Findings) < 3 {
		t.Fatalf("want several findings to validate, got %d", len(r.Findings))
	}
	r.Findings[0].Cost = &Cost{Runs: 3, Builds: 4, Time: 90 * time.Second, Text: "`COPY . .` at line 3 re-ran `npm ci` 3 times in 4 builds: 1 min 30 s"}
	if err := validateSARIF(s, sarifOf(t, r)); err != nil {
		t.Errorf("SARIF does not validate: %v", err)
	}
	abs := *r
	abs.Path = "/src/app/Dockerfile"
	if err := validateSARIF(s, sarifOf(t, &abs)); err != nil {
		t.Errorf("SARIF with an absolute path does not validate: %v", err)
	}
	clean := lint(t, "FROM scratch\nCOPY a /a\n", nil)
	if err := validateSARIF(s, sarifOf(t, clean)); err != nil {
		t.Errorf("SARIF with no results does not validate: %v", err)
	}
}

// TestSARIFSchemaRejects makes sure the validation can fail: output broken the ways a writer
// could break it is rejected by the same schema.
func TestSARIFSchemaRejects(t *testing.T) {
	s := sarifSchema(t)
	good := sarifOf(t, lint(t, "FROM node\nWORKDIR /app\nCOPY . .\nRUN npm ci\n", nil))
	breaks := map[string]func(log map[string]any){
		"result without message": func(log map[string]any) { delete(firstResult(log), "message") },
		"unknown level":          func(log map[string]any) { firstResult(log)["level"] = "warn" },
		"line 0":                 func(log map[string]any) { region(log)["startLine"] = 0 },
		"version 2.0.0":          func(log map[string]any) { log["version"] = "2.0.0" },
		"run without tool":       func(log map[string]any) { delete(log["runs"].([]any)[0].(map[string]any), "tool") },
		"unknown result field":   func(log map[string]any) { firstResult(log)["severity"] = "warning" },
	}
	for name, brk := range breaks {
		var log map[string]any
		if err := json.Unmarshal(good, &log); err != nil {
			t.Fatal(err)
		}
		brk(log)
		out, _ := json.Marshal(log)
		err := validateSARIF(s, out)
		if err == nil {
			t.Errorf("%s: validates, want a schema error", name)
			continue
		}
		if !strings.Contains(err.Error(), "jsonschema validation failed") {
			t.Errorf("%s: %v, want a validation error", name, err)
		}
	}
}

func firstResult(log map[string]any) map[string]any {
	return log["runs"].([]any)[0].(map[string]any)["results"].([]any)[0].(map[string]any)
}

func region(log map[string]any) map[string]any {
	loc := firstResult(log)["locations"].([]any)[0].(map[string]any)
	return loc["physicalLocation"].(map[string]any)["region"].(map[string]any)
}
