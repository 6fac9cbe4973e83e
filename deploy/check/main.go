// Command check validates the deploy files without a Docker engine or a cluster.
//
//	check compose FILE          load FILE as Compose does (its JSON schema, interpolation)
//	check kustomize DIR         build DIR as kustomize does, then check the output as kube does
//	check kube < MANIFESTS      decode each document strictly into its Kubernetes API type
//	check prometheusrule FILE   print the Prometheus rule file FILE as a PrometheusRule
//
// compose, kustomize and kube print what they read as JSON on stdout, for the tests to inspect;
// a problem goes to stderr, naming the document, and the exit status is 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: check compose FILE | kustomize DIR | kube < MANIFESTS | prometheusrule FILE")
	}
	var err error
	switch os.Args[1] {
	case "compose":
		err = compose(arg(2))
	case "kustomize":
		err = kustomize(arg(2))
	case "kube":
		err = kube(os.Stdin)
	case "prometheusrule":
		err = prometheusRule(arg(2))
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func arg(n int) string {
	if len(os.Args) <= n {
		fail("missing FILE")
	}
	return os.Args[n]
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "check:", message)
	os.Exit(1)
}

func compose(file string) error {
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithName("faceaudit"),
		cli.WithDotEnv,
		cli.WithOsEnv,
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return json.NewEncoder(os.Stdout).Encode(project)
}

func kustomize(dir string) error {
	built, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	manifests, err := built.AsYaml()
	if err != nil {
		return err
	}
	return kube(bytes.NewReader(manifests))
}

func kube(input io.Reader) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := monitoringv1.AddToScheme(scheme); err != nil {
		return err
	}
	strict := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(input))
	var objects []runtime.Object
	for number := 1; ; number++ {
		document, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", number, err)
		}
		if len(bytes.TrimSpace(document)) == 0 {
			continue
		}
		object, kind, err := strict.Decode(document, nil, nil)
		if err != nil {
			return fmt.Errorf("document %d: %w", number, err)
		}
		if accessor, ok := object.(metav1.Object); !ok || accessor.GetName() == "" {
			return fmt.Errorf("document %d (%s): no metadata.name", number, kind.Kind)
		}
		objects = append(objects, object)
	}
	if len(objects) == 0 {
		return errors.New("no manifests on stdin")
	}
	return json.NewEncoder(os.Stdout).Encode(objects)
}

func prometheusRule(file string) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(text, &spec); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	rule := monitoringv1.PrometheusRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
		ObjectMeta: metav1.ObjectMeta{Name: "faceaudit", Labels: map[string]string{"app.kubernetes.io/name": "faceaudit"}},
		Spec:       spec,
	}
	out, err := yaml.Marshal(rule)
	if err != nil {
		return err
	}
	fmt.Print("# Generated from deploy/prometheus/alerts.yml by `make deploy-rules`: do not edit.\n")
	_, err = os.Stdout.Write(out)
	return err
}
