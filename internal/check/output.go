package check

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// WriteText prints findings the way compilers do (file:line: severity ID: message), each with
// why it costs cache and the fix.
func WriteText(w io.Writer, r *Report) error {
	for _, f := range r.Findings {
		fix := f.Fix
		if f.Fixable {
			fix += " (--fix rewrites it)"
		}
		if _, err := fmt.Fprintf(w, "%s:%d: %s %s %s: %s\n  why: %s\n  fix: %s\n", r.Path, f.Line, f.Severity, f.Rule, f.Name, f.Message, f.Why, fix); err != nil {
			return err
		}
		if f.Cost != nil {
			if _, err := fmt.Fprintf(w, "  cost: %s\n", f.Cost.Text); err != nil {
				return err
			}
		}
	}
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintf(w, "%s: no findings\n", r.Path)
		return err
	}
	return nil
}

type jsonFinding struct {
	Finding
	Severity string `json:"severity"`
}

// WriteJSON prints the report as one JSON object.
func WriteJSON(w io.Writer, r *Report) error {
	out := struct {
		Path     string        `json:"path"`
		Findings []jsonFinding `json:"findings"`
	}{Path: r.Path, Findings: []jsonFinding{}}
	for _, f := range r.Findings {
		out.Findings = append(out.Findings, jsonFinding{f, f.Severity.String()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func sarifLevel(s Severity) string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "note"
}

// WriteSARIF prints a SARIF 2.1.0 log with one run, as GitHub code scanning accepts it: every
// rule in the driver, results pointing at the Dockerfile by a relative URI.
func WriteSARIF(w io.Writer, r *Report, version string) error {
	type text struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID                   string            `json:"id"`
		Name                 string            `json:"name"`
		ShortDescription     text              `json:"shortDescription"`
		FullDescription      text              `json:"fullDescription"`
		Help                 text              `json:"help"`
		HelpURI              string            `json:"helpUri"`
		DefaultConfiguration map[string]string `json:"defaultConfiguration"`
		Properties           map[string]any    `json:"properties"`
	}
	type region struct {
		StartLine int `json:"startLine"`
		EndLine   int `json:"endLine"`
	}
	type location struct {
		PhysicalLocation struct {
			ArtifactLocation struct {
				URI       string `json:"uri"`
				URIBaseID string `json:"uriBaseId,omitempty"`
			} `json:"artifactLocation"`
			Region region `json:"region"`
		} `json:"physicalLocation"`
	}
	type result struct {
		RuleID     string         `json:"ruleId"`
		RuleIndex  int            `json:"ruleIndex"`
		Level      string         `json:"level"`
		Message    text           `json:"message"`
		Locations  []location     `json:"locations"`
		Properties map[string]any `json:"properties,omitempty"`
	}
	uri := filepath.ToSlash(r.Path)
	base := "%SRCROOT%"
	if filepath.IsAbs(r.Path) {
		uri, base = "file://"+uri, ""
	}
	uri = strings.TrimPrefix(uri, "./")
	var rules []rule
	index := map[string]int{}
	for i, ru := range Rules {
		index[ru.ID] = i
		rules = append(rules, rule{
			ID: ru.ID, Name: ru.Name,
			ShortDescription:     text{ru.Summary},
			FullDescription:      text{ru.Summary + ": " + ru.Why + "."},
			Help:                 text{ru.Why + ". See docs/CHECK.md#" + strings.ToLower(ru.ID) + "."},
			HelpURI:              "https://github.com/strata-build/strata/blob/main/docs/CHECK.md#" + strings.ToLower(ru.ID),
			DefaultConfiguration: map[string]string{"level": sarifLevel(ru.Severity)},
			Properties:           map[string]any{"tags": []string{"dockerfile", "cache"}},
		})
	}
	results := []result{}
	for _, f := range r.Findings {
		var loc location
		loc.PhysicalLocation.ArtifactLocation.URI = uri
		loc.PhysicalLocation.ArtifactLocation.URIBaseID = base
		loc.PhysicalLocation.Region = region{f.Line, max(f.EndLine, f.Line)}
		res := result{RuleID: f.Rule, RuleIndex: index[f.Rule], Level: sarifLevel(f.Severity),
			Message: text{f.Message + ". Why: " + f.Why + ". Fix: " + f.Fix + "."}, Locations: []location{loc}}
		if f.Cost != nil {
			res.Message.Text += " Cost: " + f.Cost.Text + "."
			// A property bag, so a dashboard can sort findings by what they cost without
			// parsing the message.
			res.Properties = map[string]any{"cost": map[string]any{"runs": f.Cost.Runs, "builds": f.Cost.Builds, "seconds": f.Cost.Time.Seconds()}}
		}
		results = append(results, res)
	}
	log := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool": map[string]any{"driver": map[string]any{
				"name": "strata-check", "version": version, "semanticVersion": strings.TrimPrefix(version, "v"),
				"informationUri": "https://github.com/strata-build/strata/blob/main/docs/CHECK.md", "rules": rules,
			}},
			"results": results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// Lines renders findings one per line ("Dockerfile:4: warning STR001: …"), the shape build
// warnings take, for `strata build --check`.
func (r *Report) Lines() []string {
	out := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		l := fmt.Sprintf("%s:%d: %s %s: %s", r.Path, f.Line, f.Severity, f.Rule, f.Message)
		if f.Cost != nil {
			l += " (cost: " + f.Cost.Text + ")"
		}
		out = append(out, l)
	}
	return out
}
