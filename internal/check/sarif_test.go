package check

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// TestSARIFShape checks what GitHub code scanning requires of an upload (SARIF 2.1.0): version,
// one run with a named driver whose rules have unique IDs, and results with a rule ID, a level
// SARIF knows, a message and a relative location with a 1-based line. The full schema check
// against the OASIS schema is TestSARIFSchema (sarif_schema_test.go).
func TestSARIFShape(t *testing.T) {
	r := lint(t, "FROM node\nWORKDIR /app\nCOPY . .\nRUN npm ci\nADD https://e.com/x /x\n", nil)
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, r, "1.2.3"); err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv("STRATA_SARIF_OUT"); p != "" {
		_ = os.WriteFile(p, buf.Bytes(), 0o644)
	}
	var log struct {
		Schema  string `json:"$schema"`
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID               string `json:"id"`
						ShortDescription struct {
							Text string `json:"text"`
						} `json:"shortDescription"`
						DefaultConfiguration struct {
							Level string `json:"level"`
						} `json:"defaultConfiguration"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI       string `json:"uri"`
							URIBaseID string `json:"uriBaseId"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
							EndLine   int `json:"endLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	dec := json.NewDecoder(&buf)
	if err := dec.Decode(&log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || log.Schema == "" || len(log.Runs) != 1 {
		t.Fatalf("version %q schema %q runs %d", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	if run.Tool.Driver.Name == "" || len(run.Tool.Driver.Rules) != len(Rules) {
		t.Fatalf("driver %q with %d rules, want %d", run.Tool.Driver.Name, len(run.Tool.Driver.Rules), len(Rules))
	}
	seen := map[string]bool{}
	for _, ru := range run.Tool.Driver.Rules {
		if seen[ru.ID] || ru.ShortDescription.Text == "" || !validLevel(ru.DefaultConfiguration.Level) {
			t.Errorf("bad rule %+v", ru)
		}
		seen[ru.ID] = true
	}
	if len(run.Results) != len(r.Findings) || len(run.Results) == 0 {
		t.Fatalf("%d results for %d findings", len(run.Results), len(r.Findings))
	}
	for _, res := range run.Results {
		if run.Tool.Driver.Rules[res.RuleIndex].ID != res.RuleID || !validLevel(res.Level) || res.Message.Text == "" || len(res.Locations) != 1 {
			t.Errorf("bad result %+v", res)
		}
		loc := res.Locations[0].PhysicalLocation
		if loc.ArtifactLocation.URI != "Dockerfile" || loc.ArtifactLocation.URIBaseID != "%SRCROOT%" || loc.Region.StartLine < 1 || loc.Region.EndLine < loc.Region.StartLine {
			t.Errorf("bad location %+v", loc)
		}
	}
}

func validLevel(l string) bool { return l == "none" || l == "note" || l == "warning" || l == "error" }
