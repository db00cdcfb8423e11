"""`make bench`: measurements printed as a table, never asserted."""


def main() -> None:
    print("no benchmarks yet")


if __name__ == "__main__":
    main()
