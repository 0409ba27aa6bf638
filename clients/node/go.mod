module github.com/breakerbox/breakerbox/clients/node

go 1.24
