// Command kube-apiserver is the upstream Kubernetes API server, built from the
// published k8s.io/kubernetes module so the tests run against the real thing.
package main

import (
	"os"
	_ "time/tzdata" // timezone data for CronJob, as upstream embeds it

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
