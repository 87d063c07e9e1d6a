//go:build cgo && fakenvml

package main

import "github.com/enroot-cri/enroot-cri/mig/nvmlinv"

func init() { fake = nvmlinv.Fake }
