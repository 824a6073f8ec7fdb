// Package scheduler is an embeddable, distributed task scheduler.
package scheduler
