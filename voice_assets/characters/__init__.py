"""Characters of a series: voices linked across episodes, names from every source, the registry.

Plain typed functions (no dagster): ``cast`` reads characters.yaml, ``evidence`` turns an
episode's subtitles into name votes, ``voices`` links speakers into series voices, ``naming``
ranks the evidence into a name, ``mapping`` builds the tables, ``store`` keeps the ledger.
"""
