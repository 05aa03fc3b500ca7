"""placeholder"""
def openapi_document(description, address):
    return {}
